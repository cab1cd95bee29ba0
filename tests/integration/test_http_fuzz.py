"""Schemathesis generates requests from each service's OpenAPI (valid token): none gets a 5xx.

Bad input gets a 4xx with a message, never a 500; this covers every route and parameter."""

import subprocess
import sys
from pathlib import Path

import pytest
from stackutil import AUTH, ServiceProcess, Stack

SERVICES = ("archive", "tickets", "loyalty", "notify", "relations")


@pytest.mark.slow
@pytest.mark.parametrize("name", SERVICES)
def test_no_generated_request_gets_a_server_error(stack: Stack, name: str) -> None:
    service = ServiceProcess.isolated(name, stack).start()
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "run",
                f"{service.url}/openapi.json",
                "--header",
                f"Authorization: {AUTH['Authorization']}",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "25",
                "--seed",
                "20261123",
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-4000:]
    finally:
        service.stop()
