"""Issue 18: a service bound beyond loopback with the local stack's dev token refuses to start:
the process ends at once (status 1) with one line naming the setting, before it listens or
connects to anything. (Bound to loopback the same settings start: every other e2e test, and the
unit tests of the check in services/runtime/tests/test_insecure_settings_unit.py.)"""

import json
import os
import subprocess
import sys

import pytest

from crm_runtime.settings import DEV_TOKEN

pytestmark = pytest.mark.e2e


def test_the_dev_token_on_0_0_0_0_stops_the_process_with_one_line() -> None:
    env = {
        **os.environ,
        "CRM_API_TOKENS": json.dumps({DEV_TOKEN: ["agent", "supervisor", "ops", "integration"]}),
        "CRM_TICKETS_HTTP_HOST": "0.0.0.0",
        "CRM_TICKETS_HTTP_PORT": "1",  # never reached: nothing listens
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "MONGODB_URL": "mongodb://127.0.0.1:1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "crm_tickets"], env=env, capture_output=True, timeout=120
    )
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 1, done.stderr.decode()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "crm-tickets refuses to start bound to '0.0.0.0' (CRM_TICKETS_HTTP_HOST): CRM_API_TOKENS"
    )
