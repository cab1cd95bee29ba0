"""Issue 18: a service bound beyond loopback with the local stack's dev token refuses to start:
the process ends at once (status 1) with one line naming the setting, before it listens or
connects to anything. (Bound to loopback the same settings start: every other e2e test, and the
unit tests of the check in services/runtime/tests/test_insecure_settings_unit.py.)"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from crm_runtime.crypto import new_key_file_content
from crm_runtime.settings import DEV_TOKEN

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_dev_token_on_0_0_0_0_stops_the_process_with_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"  # everything else a start needs is there
    keys.write_text(json.dumps(new_key_file_content()))
    env = {
        **os.environ,
        "CRM_MASTER_KEYS_FILE": str(keys),
        "CRM_API_TOKENS": json.dumps({DEV_TOKEN: ["agent", "supervisor", "ops", "integration"]}),
        "CRM_TICKETS_HTTP_HOST": "0.0.0.0",
        "CRM_TICKETS_HTTP_PORT": str(free_port()),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "MONGODB_URL": "mongodb://127.0.0.1:1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "crm_tickets"], env=env, capture_output=True, timeout=60
    )  # a service that starts runs until stopped: the timeout fails the test
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 1, done.stderr.decode()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "crm-tickets refuses to start bound to '0.0.0.0' (CRM_TICKETS_HTTP_HOST): CRM_API_TOKENS"
    )
