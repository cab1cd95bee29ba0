"""The AsyncAPI documents in docs/asyncapi/: up to date, valid for the official parser
(`@asyncapi/parser`, installed on demand into docs/asyncapi/validate/node_modules), and complete:
each names the topics its service consumes and publishes, with the schema of every event type."""

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tooling import ROOT, run

from crm_contracts.topics import SERVICES, consumed_by, topic

DOCS = ROOT / "docs" / "asyncapi"
VALIDATOR = DOCS / "validate"


@pytest.fixture(scope="module")
def validate_mjs() -> Path:
    """validate.mjs, with its pinned parser installed (`npm ci`) when node_modules is missing."""
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"{tool} is needed to validate the AsyncAPI documents"
    if not (VALIDATOR / "node_modules" / "@asyncapi" / "parser" / "package.json").exists():
        run(["npm", "ci", "--no-audit", "--no-fund"], cwd=VALIDATOR, timeout=600)
    return VALIDATOR / "validate.mjs"


def validate(validate_mjs: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(validate_mjs), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load(service: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DOCS / f"{service}.yaml").read_text("utf-8"))
    return document


def test_the_documents_are_what_the_services_generate(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(DOCS / "generate.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for service in SERVICES:
        fresh = (tmp_path / f"{service}.yaml").read_text("utf-8")
        checked_in = DOCS / f"{service}.yaml"
        assert checked_in.exists(), f"{checked_in} is missing: run docs/asyncapi/generate.py"
        assert checked_in.read_text("utf-8") == fresh, (
            f"{checked_in} is out of date: run .venv/bin/python docs/asyncapi/generate.py"
        )


def test_the_official_parser_accepts_every_document(validate_mjs: Path) -> None:
    files = [DOCS / f"{service}.yaml" for service in SERVICES]
    done = validate(validate_mjs, *files)
    assert done.returncode == 0, done.stdout + done.stderr
    for file in files:
        assert f"ok {file} (AsyncAPI 3.0.0" in done.stdout


def _channels(document: dict[str, Any], action: str) -> dict[str, dict[str, Any]]:
    """Address -> channel of the operations with `action` (receive, send)."""
    found = {}
    for operation in document["operations"].values():
        if operation["action"] == action:
            channel = document["channels"][_key(operation["channel"]["$ref"])]
            found[channel["address"]] = channel
    return found


def _key(reference: str) -> str:
    return reference.rsplit("/", 1)[-1]


def _event_types(document: dict[str, Any], channel: dict[str, Any]) -> set[str]:
    """The event types (`type` constants of the envelopes) a channel's messages allow."""
    components = document["components"]
    types: set[str] = set()
    for reference in channel["messages"].values():
        payload = components["messages"][_key(reference["$ref"])]["payload"]
        pending = [payload]
        while pending:
            schema = pending.pop()
            if "$ref" in schema:
                pending.append(components["schemas"][_key(schema["$ref"])])
            pending.extend(schema.get("anyOf", []))
            if "const" in schema.get("properties", {}).get("type", {}):
                types.add(schema["properties"]["type"]["const"])
                assert "$ref" in schema["properties"]["data"], "the envelope's data has a schema"
    return types


@pytest.mark.parametrize(
    ("service", "consumes", "publishes"),
    [
        ("archive", {"orders.v1", "members.v1", "tickets.v1"}, {"archive.v1", "privacy.v1"}),
        ("tickets", {"callcenter.v1", "archive.v1"}, {"tickets.v1", "tickets.dlq.v1"}),
        ("loyalty", {"orders.v1", "members.v1"}, {"loyalty.v1", "privacy.v1"}),
        ("notify", {"tickets.v1", "loyalty.v1"}, {"notify.v1", "notify.dlq.v1"}),
        (
            "relations",
            {"orders.v1", "members.v1", "archive.v1", "tickets.v1"},
            {"relations.v1", "privacy.v1", "relations.dlq.v1"},
        ),
    ],
)
def test_each_document_names_what_its_service_consumes_and_publishes(
    service: str, consumes: set[str], publishes: set[str]
) -> None:
    document = load(service)
    received, sent = _channels(document, "receive"), _channels(document, "send")
    assert consumes <= set(received)
    assert set(received) == {t.name for t in consumed_by(service)}
    assert publishes <= set(sent)
    # The archive also announces the customers staff enter and edit, as the member system does.
    shared = {"members.v1"} if service == "archive" else set()
    assert set(sent) == {f"{service}.v1", "privacy.v1", f"{service}.dlq.v1", *shared}
    for address, channel in {**received, **sent}.items():
        if address.endswith(".dlq.v1"):
            continue
        assert _event_types(document, channel) == set(topic(address).event_types), address
    dead_letter = document["components"]["messages"][
        _key(sent[f"{service}.dlq.v1"]["messages"]["Message"]["$ref"])
    ]
    assert "x-dlq-reason" in dead_letter["headers"]["properties"]


def test_the_archive_publishes_customer_created_with_its_envelope() -> None:
    schema = load("archive")["components"]["schemas"]["CustomerCreatedEvent"]
    assert schema["properties"]["type"]["const"] == "customer.created"
    assert schema["properties"]["specversion"]["const"] == "1.0"
    assert {"id", "source", "type", "subject", "time", "data"} <= set(schema["required"])
    assert schema["properties"]["data"] == {"$ref": "#/components/schemas/CustomerCreated"}


def _missing_message(document: dict[str, Any]) -> None:
    channel = document["channels"]["archive-inbound:orders.v1"]
    channel["messages"]["SubscribeMessage"]["$ref"] = "#/components/messages/no-such-message"


def _unknown_action(document: dict[str, Any]) -> None:
    document["operations"]["archive-outbound:archive.v1"]["action"] = "publish"


def _no_channel_address_type(document: dict[str, Any]) -> None:
    document["channels"]["archive-outbound:archive.v1"]["address"] = 42


@pytest.mark.parametrize("damage", [_missing_message, _unknown_action, _no_channel_address_type])
def test_the_validator_rejects_a_broken_document(
    validate_mjs: Path, tmp_path: Path, damage: Any
) -> None:
    document = load("archive")
    damage(document)
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    done = validate(validate_mjs, broken)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{broken}: error" in done.stderr
    assert f"ok {broken}" not in done.stdout
