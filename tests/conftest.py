"""The real local stack for integration and end-to-end tests.

When `KAFKA_BOOTSTRAP_SERVERS` / `MONGODB_URL` are set, the tests use those servers; otherwise the
session starts Apache Kafka (KRaft, jars from Maven Central) and SecantusDB on free ports in a
folder of its own, and stops them at the end. `CRM_TEST_STACK=containers` starts Kafka and MongoDB
in Docker instead (tests/containerstack.py); where no Docker engine answers, the session stops at
once, before collecting anything.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import ROOT, SmtpServer, Stack, running_stack


def pytest_configure(config: pytest.Config) -> None:
    """CRM_TEST_STACK names the stack; an unknown name, or `containers` with no Docker engine
    answering, stops the session here with the reason and how to run the default."""
    if os.environ.get("CRM_TEST_STACK", "").strip():
        import containerstack

        try:
            containerstack.check_selection(os.environ)
        except containerstack.StackSelectionError as exc:
            pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with running_stack("test-stack") as started:
        yield started


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free port that keeps what it receives."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/ need the stack; mark them integration unless they say otherwise."""
    for item in items:
        if Path(item.path).is_relative_to(ROOT / "tests") and not any(
            item.iter_markers(name) for name in ("e2e", "integration", "fault", "hostile")
        ):
            item.add_marker(pytest.mark.integration)
