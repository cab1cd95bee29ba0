"""The services' Dockerfiles, read statically (there is no Docker engine to build them here).

Each image is multi-stage, runs as a numeric non-root user, checks /healthz with Python's urllib,
and is built from its own folder plus contracts/ and services/runtime/ only.
"""

import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pytest
from stackutil import local_stack
from tooling import PORTS, ROOT

OUR_PACKAGES = {"crm-contracts", "crm-runtime", "crm-archive", "crm-tickets", "crm-loyalty"}
OUR_PACKAGES |= {"crm-notify", "crm-relations", "crm-cli"}


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


IMAGES = sorted([*PORTS, "console"])
"""Every image: the services, and the console in front of them."""


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile: each FROM with the instructions after it (continuations
    joined, comments and blank lines dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, args))
        elif keyword != "ARG":
            raise ValueError(f"{keyword} before the first FROM")
    return stages


def copy_sources(args: str) -> tuple[list[str], bool]:
    """The sources of a COPY/ADD and whether it copies from another stage or image."""
    words = shlex.split(args)
    from_stage = any(w.startswith("--from=") for w in words)
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1], from_stage


def env_values(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for args in stage.args("ENV"):
        for word in shlex.split(args):
            key, sep, value = word.partition("=")
            if sep:
                values[key] = value
    return values


def problems(text: str, service: str) -> list[str]:
    """What is wrong with a service's Dockerfile; empty when it is as required."""
    found: list[str] = []
    stages = parse_dockerfile(text)
    if len(stages) < 2:
        return [f"{len(stages)} FROM: not a multi-stage build"]
    final = stages[-1]
    allowed = [
        PurePosixPath("contracts"),
        PurePosixPath("services/runtime"),
        PurePosixPath(f"services/{service}"),
    ]
    for stage in stages:
        for keyword in ("COPY", "ADD"):
            for args in stage.args(keyword):
                sources, from_stage = copy_sources(args)
                if from_stage:
                    continue
                if stage is final:
                    found.append(f"the final stage copies from the context: {keyword} {args}")
                for source in sources:
                    path = PurePosixPath(source.rstrip("/") or ".")
                    inside = any(path == a or path.is_relative_to(a) for a in allowed)
                    if path.is_absolute() or ".." in path.parts or "*" in source or not inside:
                        found.append(f"{keyword} source outside the allowed folders: {source}")
    if not final.image.startswith("python:3.11-slim"):
        found.append(f"the final stage is {final.image}, not python:3.11-slim")
    users = final.args("USER")
    if not users:
        found.append("the final stage has no USER")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            found.append(f"the final stage runs as {users[-1]!r}: want a numeric, non-root uid")
    checks = final.args("HEALTHCHECK")
    if not checks or "/healthz" not in checks[-1] or "urllib" not in checks[-1]:
        found.append("no HEALTHCHECK on /healthz with python's urllib in the final stage")
    port = str({**PORTS, "console": local_stack.CONSOLE_PORT}[service])
    if not any(port in args.split() for args in final.args("EXPOSE")):
        found.append(f"the final stage does not EXPOSE {port}")
    env = env_values(final)
    if env.get(f"CRM_{service.upper()}_HTTP_HOST") != "0.0.0.0":
        found.append(f"CRM_{service.upper()}_HTTP_HOST is not 0.0.0.0")
    if not any(f"crm_{service}" in args for args in final.args("CMD") + final.args("ENTRYPOINT")):
        found.append(f"the image does not run crm_{service}")
    return found


@pytest.mark.parametrize("service", IMAGES)
def test_dockerfile_is_multi_stage_non_root_and_healthchecked(service: str) -> None:
    dockerfile = ROOT / "services" / service / "Dockerfile"
    assert dockerfile.is_file(), f"{dockerfile} is missing"
    assert problems(dockerfile.read_text(), service) == []


@pytest.mark.parametrize("service", IMAGES)
def test_dockerfile_copies_what_exists(service: str) -> None:
    stages = parse_dockerfile((ROOT / "services" / service / "Dockerfile").read_text())
    copied = {
        source.rstrip("/")
        for stage in stages
        for args in stage.args("COPY")
        for source in copy_sources(args)[0]
        if not copy_sources(args)[1]
    }
    assert copied == {"contracts", "services/runtime", f"services/{service}"}
    assert all((ROOT / path / "pyproject.toml").is_file() for path in copied)


def test_the_checks_catch_a_bad_dockerfile() -> None:
    bad = "FROM python:3.11\nCOPY . /app\nCOPY services/tickets/ /x\nUSER root\nCMD python app.py\n"
    found = problems(bad, "archive")
    assert any("multi-stage" in p for p in found)
    two_stages = "FROM python:3.11-slim AS b\nCOPY . .\nCOPY ../secret s\n" + bad.replace(
        "FROM python:3.11", "FROM python:3.11-slim"
    )
    found = problems(two_stages, "archive")
    assert "COPY source outside the allowed folders: ." in found
    assert "COPY source outside the allowed folders: ../secret" in found
    assert "COPY source outside the allowed folders: services/tickets/" in found
    assert any("copies from the context" in p for p in found)
    assert any("runs as 'root'" in p for p in found)
    assert any("HEALTHCHECK" in p for p in found)
    assert any("EXPOSE 8081" in p for p in found)
    numeric_root = two_stages.replace("USER root", "USER 0:0")
    assert any("runs as '0:0'" in p for p in problems(numeric_root, "archive"))


def _requirement_name(requirement: str) -> str:
    name = requirement
    for stop in "[<>=!~;@ (":
        name = name.split(stop)[0]
    return name.strip().lower().replace("_", "-")


@pytest.mark.parametrize(
    ("folder", "allowed"),
    [
        ("contracts", set()),
        ("services/runtime", {"crm-contracts"}),
        *[(f"services/{s}", {"crm-contracts", "crm-runtime"}) for s in sorted(PORTS)],
    ],
)
def test_packages_depend_only_on_contracts_and_runtime(folder: str, allowed: set[str]) -> None:
    """An image holds its service, the runtime and the contracts: no other package of ours."""
    project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
    ours = {_requirement_name(r) for r in project.get("dependencies", [])} & OUR_PACKAGES
    assert ours <= allowed, f"{folder} depends on {sorted(ours - allowed)}"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    lines = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".venv", ".cache", ".local", "tests", "benchmarks", "**/tests", "**/.venv"):
        assert entry in lines, f".dockerignore does not leave out {entry}"
    # Deny by default, then let in only what the images COPY.
    assert "*" in lines
    assert {"!contracts/", "!services/"} <= lines
