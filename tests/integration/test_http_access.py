"""Every route but health and metrics, enumerated from each service's OpenAPI, answers 401 without
a token and 403 to a role it does not admit — with a JSON body, never a 5xx."""

import json
import re
from typing import Any

import httpx
import pytest
from stackutil import DEV_TOKEN, ServiceProcess, Stack

SERVICES = ("archive", "tickets", "loyalty", "notify", "relations")
ROLE_TOKENS = {f"only-{role}": [role] for role in ("agent", "supervisor", "ops", "integration")}
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/asyncapi", "/asyncapi.json")


def routes(openapi: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for path, methods in openapi["paths"].items():
        if path in OPEN_PATHS:
            continue
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        found += [(method.upper(), concrete) for method in methods]
    return sorted(found)


@pytest.mark.parametrize("name", SERVICES)
def test_routes_refuse_missing_tokens_and_wrong_roles(stack: Stack, name: str) -> None:
    service = ServiceProcess.isolated(name, stack)
    service.env["CRM_API_TOKENS"] = json.dumps(
        {DEV_TOKEN: ["agent", "supervisor", "ops", "integration"], **ROLE_TOKENS}
    )
    service.start()
    try:
        openapi = httpx.get(service.url + "/openapi.json", timeout=10).json()
        checked = forbidden = 0
        for method, path in routes(openapi):
            anonymous = httpx.request(method, service.url + path, json={}, timeout=10)
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            assert anonymous.json()["error"] == "unauthorized"
            for token in ROLE_TOKENS:
                answer = httpx.request(
                    method,
                    service.url + path,
                    json={},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                )
                assert answer.status_code < 500, (method, path, token, answer.text)
                assert answer.status_code != 401, (method, path, token)
                if answer.status_code == 403:
                    forbidden += 1
                    assert "message" in answer.json()
            checked += 1
        assert checked >= 4
        assert forbidden >= 1, "some route must admit fewer than all roles"
    finally:
        service.stop()
