"""The real stack for the CLI's integration tests.

cli/tests is outside tests/, so tests/conftest.py's `stack` fixture is not visible here. This
puts tests/ on the path and builds the same stack with the same helpers (tests/stackutil.py), in
a folder of its own: tests/conftest.py names its folder by the process id, so importing its
fixture would make a second broker on the first one's data when the whole suite runs in one
session. Module-scoped, so this stack is stopped before tests/ starts its own. As there, when
`KAFKA_BOOTSTRAP_SERVERS` / `MONGODB_URL` are set, those servers are used.
"""

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from stackutil import ROOT, Stack, free_port, local_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    base = ROOT / ".local" / f"cli-test-stack-{os.getpid()}"
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
