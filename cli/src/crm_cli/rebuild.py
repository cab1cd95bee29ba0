"""`crm rebuild <service>`: run the service's own rebuild entry point as a subprocess.

The CLI imports no service (import-linter), so a rebuild runs `python -m <module>` with the same
interpreter. Only the archive has one (`crm_archive.rebuild`): its state is entirely derived from
the topics. The other services keep state that no topic holds (tickets created, assigned and
commented over HTTP; loyalty redemptions and adjustments over HTTP) or have effects outside
(notify would send every message again), so resetting their consumer groups onto a fresh
database would not rebuild them: the CLI refuses.
"""

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from crm_cli.errors import EXIT_USAGE, CliError, check_service


@dataclass(frozen=True)
class Rebuilder:
    package: str
    module: str
    default_database: str


REBUILDERS: dict[str, Rebuilder] = {
    "archive": Rebuilder("crm_archive", "crm_archive.rebuild", "crm_archive_rebuild"),
}
WHY_NOT: dict[str, str] = {
    "tickets": "tickets keeps state no topic holds (tickets opened, assigned and commented over "
    "HTTP)",
    "loyalty": "loyalty keeps state no topic holds (redemptions and adjustments made over HTTP)",
    "notify": "notify would send every message again",
}


def rebuilder(service: str) -> Rebuilder:
    found = REBUILDERS.get(check_service(service))
    if found is None:
        supported = ", ".join(REBUILDERS)
        raise CliError(
            f"{service} cannot be rebuilt from the topics: {WHY_NOT.get(service, 'no rebuild')}; "
            f"supported: {supported}",
            EXIT_USAGE,
        )
    if not _installed(found):
        raise CliError(f"{found.module} is not installed in this environment ({sys.executable})")
    return found


def _installed(found: Rebuilder) -> bool:
    """Whether the service's rebuild module is there, without importing the service."""
    spec = importlib.util.find_spec(found.package)
    if spec is None or not spec.submodule_search_locations:
        return False
    name = found.module.rsplit(".", 1)[1] + ".py"
    return any((Path(where) / name).exists() for where in spec.submodule_search_locations)


def command(found: Rebuilder, *, database: str | None, drop: bool, at: str | None) -> list[str]:
    args = [sys.executable, "-m", found.module, "--database", database or found.default_database]
    if drop:
        args.append("--drop")
    if at:
        args += ["--at", at]
    return args


def environment(bootstrap: str, mongodb_url: str | None) -> dict[str, str]:
    """The child's environment: ours (security, keys, service settings) with the bootstrap
    servers (and the MongoDB URL) the command was given."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    if mongodb_url:
        env["MONGODB_URL"] = mongodb_url
    return env


def run(args: list[str], env: dict[str, str]) -> int:
    """Run the rebuild with our stdout and stderr; its exit code."""
    try:
        return subprocess.run(args, env=env, check=False).returncode
    except OSError as exc:
        raise CliError(f"cannot run {args[0]}: {exc.strerror}") from exc
