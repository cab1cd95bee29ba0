"""The real local stack for integration and end-to-end tests.

When `KAFKA_BOOTSTRAP_SERVERS` / `MONGODB_URL` are set, the tests use those servers; otherwise the
session starts Apache Kafka (KRaft, jars from Maven Central) and SecantusDB on free ports in a
folder of its own, and stops them at the end.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import ROOT, SmtpServer, Stack, free_port, local_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    base = ROOT / ".local" / f"test-stack-{os.getpid()}"
    started = []
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    mongodb_url = os.environ.get("MONGODB_URL", "")
    kafka_pid = None
    try:
        if not bootstrap:
            node = local_stack.KafkaNode(base / "kafka", free_port(), free_port())
            proc = node.start()
            started.append(proc)
            bootstrap, kafka_pid = node.bootstrap, proc.pid
        if not mongodb_url:
            mongo = local_stack.MongoNode(base / "secantusdb", free_port())
            started.append(mongo.start())
            mongodb_url = mongo.url
        local_stack.provision_topics(bootstrap)
        yield Stack(bootstrap, mongodb_url, kafka_pid, logs=ROOT / ".local" / "test-logs")
    finally:
        for proc in reversed(started):
            local_stack.stop_pid(proc.pid, timeout=30)
            proc.wait(10)
        if os.environ.get("CRM_KEEP_TEST_STACK") != "1":
            shutil.rmtree(base, ignore_errors=True)


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
