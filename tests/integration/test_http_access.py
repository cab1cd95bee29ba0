"""Who may call what: one table (`ROLE_MATRIX`) holds every route of every service and exactly the
roles it admits, operations and API documents included. Asked as each role and without a token,
each route must answer exactly as its row says: admitted (not 401/403, never a 5xx), refused with
403 (a role it does not admit) or 401 (no token), both as JSON. A route the apps expose without a
row, or a row without a route, fails `test_every_route_the_services_expose_has_a_row`: opening a
route to the wrong role, or adding one nobody decided the roles of, fails here (issue 18)."""

import importlib
import json
import re
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from stackutil import ServiceProcess, Stack

from crm_runtime.crypto import new_key_file_content

SERVICES = ("archive", "tickets", "loyalty", "notify", "relations")
AGENT, SUPERVISOR, OPS, INTEGRATION = "agent", "supervisor", "ops", "integration"
ROLES = (AGENT, SUPERVISOR, OPS, INTEGRATION)
OPEN: Final = "no token needed"
"""Served to anyone, token or not: probes, metrics and the API documents."""
Access = frozenset[str] | str
"""The roles a route admits, or `OPEN`."""


def roles(*names: str) -> frozenset[str]:
    return frozenset(names)


# Every service serves these (crm_runtime.http and FastAPI's documents).
OPERATIONS: dict[tuple[str, str], Access] = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("GET", "/asyncapi"): OPEN,
    ("GET", "/asyncapi.json"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/docs/oauth2-redirect"): OPEN,
    ("GET", "/redoc"): OPEN,
    ("GET", "/me"): roles(AGENT, SUPERVISOR, OPS, INTEGRATION),
    ("GET", "/audit/pii-reads"): roles(OPS),
    ("GET", "/dead-letters"): roles(SUPERVISOR, OPS),
    ("POST", "/ops/keys/rewrap"): roles(OPS),
    ("POST", "/ops/sweeps/{name}"): roles(OPS),
}

ROLE_MATRIX: dict[tuple[str, str, str], Access] = {
    **{(service, m, p): access for service in SERVICES for (m, p), access in OPERATIONS.items()},
    # archive (services/archive/README.md, "Serves")
    ("archive", "GET", "/customers"): roles(AGENT, SUPERVISOR, OPS),
    ("archive", "GET", "/customers/{customer_id}"): roles(AGENT, SUPERVISOR, OPS),
    ("archive", "POST", "/customers"): roles(AGENT, SUPERVISOR),
    ("archive", "POST", "/customers/import"): roles(SUPERVISOR),
    ("archive", "GET", "/customers/export.csv"): roles(SUPERVISOR),
    ("archive", "PATCH", "/customers/{customer_id}"): roles(AGENT, SUPERVISOR),
    ("archive", "GET", "/customers/{customer_id}/timeline"): roles(AGENT, SUPERVISOR, OPS),
    ("archive", "GET", "/customers/{customer_id}/export"): roles(AGENT, SUPERVISOR, OPS),
    ("archive", "GET", "/customers/{customer_id}/erasure"): roles(AGENT, SUPERVISOR, OPS),
    ("archive", "POST", "/customers/{customer_id}/contacts"): roles(AGENT, SUPERVISOR),
    ("archive", "POST", "/customers/{customer_id}/notes"): roles(AGENT, SUPERVISOR),
    ("archive", "GET", "/customers/{customer_id}/notes"): roles(AGENT, SUPERVISOR),
    ("archive", "GET", "/segments/summary"): roles(AGENT, SUPERVISOR, OPS),
    # tickets (services/tickets/README.md, "Serves")
    ("tickets", "POST", "/tickets"): roles(AGENT, SUPERVISOR, INTEGRATION),
    ("tickets", "GET", "/tickets"): roles(AGENT, SUPERVISOR, OPS),
    ("tickets", "GET", "/tickets/{ticket_id}"): roles(AGENT, SUPERVISOR, OPS),
    ("tickets", "POST", "/tickets/{ticket_id}/assign"): roles(AGENT, SUPERVISOR),
    ("tickets", "POST", "/tickets/{ticket_id}/comment"): roles(AGENT, SUPERVISOR),
    ("tickets", "POST", "/tickets/{ticket_id}/status"): roles(AGENT, SUPERVISOR),
    ("tickets", "POST", "/tickets/{ticket_id}/resolve"): roles(AGENT, SUPERVISOR),
    ("tickets", "POST", "/tickets/{ticket_id}/reopen"): roles(AGENT, SUPERVISOR),
    ("tickets", "GET", "/agents"): roles(AGENT, SUPERVISOR, OPS),
    ("tickets", "GET", "/agents/{agent_id}"): roles(AGENT, SUPERVISOR, OPS),
    ("tickets", "PUT", "/agents/{agent_id}"): roles(SUPERVISOR),
    ("tickets", "DELETE", "/agents/{agent_id}"): roles(SUPERVISOR),
    ("tickets", "GET", "/reports/sla"): roles(SUPERVISOR, OPS),
    ("tickets", "GET", "/reports/root-causes"): roles(SUPERVISOR, OPS),
    ("tickets", "GET", "/reports/satisfaction"): roles(SUPERVISOR, OPS),
    # loyalty (services/loyalty/README.md, "Serves")
    ("loyalty", "GET", "/accounts/{customer_id}"): roles(AGENT, SUPERVISOR, OPS, INTEGRATION),
    ("loyalty", "GET", "/accounts/{customer_id}/ledger"): roles(
        AGENT, SUPERVISOR, OPS, INTEGRATION
    ),
    ("loyalty", "POST", "/accounts/{customer_id}/redemptions"): roles(
        AGENT, SUPERVISOR, INTEGRATION
    ),
    ("loyalty", "POST", "/accounts/{customer_id}/adjustments"): roles(SUPERVISOR),
    ("loyalty", "GET", "/reports/liability"): roles(SUPERVISOR, OPS),
    # notify (services/notify/README.md, "Serves")
    ("notify", "GET", "/notifications"): roles(AGENT, SUPERVISOR, OPS),
    ("notify", "GET", "/notifications/{notification_id}"): roles(AGENT, SUPERVISOR, OPS),
    ("notify", "GET", "/preferences/{customer_id}"): roles(AGENT, SUPERVISOR, OPS),
    ("notify", "PUT", "/preferences/{customer_id}"): roles(AGENT, SUPERVISOR),
    ("notify", "POST", "/templates/{name}/preview"): roles(SUPERVISOR, OPS),
    # relations (services/relations/README.md, "Serves")
    ("relations", "GET", "/tasks"): roles(AGENT, SUPERVISOR),
    ("relations", "GET", "/tasks/{task_id}"): roles(AGENT, SUPERVISOR),
    ("relations", "POST", "/tasks"): roles(AGENT, SUPERVISOR),
    ("relations", "POST", "/tasks/{task_id}/complete"): roles(AGENT, SUPERVISOR),
    ("relations", "POST", "/tasks/{task_id}/reassign"): roles(AGENT, SUPERVISOR),
    ("relations", "POST", "/tasks/{task_id}/cancel"): roles(AGENT, SUPERVISOR),
    ("relations", "GET", "/reports/follow-ups"): roles(SUPERVISOR, OPS),
    ("relations", "POST", "/agreements"): roles(SUPERVISOR),
    ("relations", "GET", "/agreements"): roles(AGENT, SUPERVISOR, OPS, INTEGRATION),
    ("relations", "GET", "/agreements/{agreement_id}"): roles(AGENT, SUPERVISOR, OPS, INTEGRATION),
    ("relations", "PUT", "/agreements/{agreement_id}"): roles(SUPERVISOR),
    ("relations", "POST", "/agreements/{agreement_id}/terminate"): roles(SUPERVISOR),
    ("relations", "POST", "/agreements/{agreement_id}/renew"): roles(SUPERVISOR),
}
"""(service, method, path as declared) -> the roles it admits, or OPEN."""

ROLE_TOKENS = {f"only-{role}": {"user": f"only-{role}", "roles": [role]} for role in ROLES}


def declared_roles(route: Any) -> str:
    """The roles a route's dependencies declare (`Authenticator.require` documents them), as a
    `roles(...)` call to paste into a row; `OPEN` without any."""
    found: list[str] = []
    pending = list(getattr(getattr(route, "dependant", None), "dependencies", []))
    while pending:
        dependency = pending.pop()
        doc = getattr(dependency.call, "__doc__", None) or ""
        if doc.startswith("Roles: "):
            found += doc.removeprefix("Roles: ").split(", ")
        pending += dependency.dependencies
    if not found:
        return "OPEN"
    return "roles(" + ", ".join(r.upper() for r in ROLES if r in found) + ")"


def exposed_routes(name: str, app: FastAPI) -> dict[tuple[str, str, str], str]:
    """Every (service, method, path) the app serves (HEAD aside), with its declared roles."""
    found = {}
    for route in iter_route_contexts(app.routes):
        for method in sorted(set(route.methods or ()) - {"HEAD"}):
            found[(name, method, str(route.path))] = declared_roles(route)
    return found


def test_every_route_the_services_expose_has_a_row(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(new_key_file_content()))
    monkeypatch.setenv("CRM_MASTER_KEYS_FILE", str(keys))
    exposed: dict[tuple[str, str, str], str] = {}
    for name in SERVICES:
        app = importlib.import_module(f"crm_{name}.app").build_app()
        exposed |= exposed_routes(name, app)
    missing = sorted(set(exposed) - set(ROLE_MATRIX))
    assert not missing, (
        "routes without a row in ROLE_MATRIX (tests/integration/test_http_access.py); add these "
        "rows, with the roles the service's README gives (here: what the route declares):\n"
        + "\n".join(f'    ("{s}", "{m}", "{p}"): {exposed[(s, m, p)]},' for s, m, p in missing)
    )
    stale = sorted(set(ROLE_MATRIX) - set(exposed))
    assert not stale, f"rows of ROLE_MATRIX without a route: remove them: {stale}"


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def ask(service: ServiceProcess, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, service.url + concrete(path), json={}, headers=headers, timeout=10)


@pytest.mark.parametrize("name", SERVICES)
def test_each_route_admits_exactly_the_roles_of_its_row(stack: Stack, name: str) -> None:
    service = ServiceProcess.isolated(name, stack)
    service.env["CRM_API_TOKENS"] = json.dumps(ROLE_TOKENS)
    service.start()
    wrong: list[str] = []
    try:
        for (service_name, method, path), access in sorted(ROLE_MATRIX.items()):
            if service_name != name:
                continue
            row = f"{method} {path}"
            anonymous = ask(service, method, path, None)
            if access == OPEN:
                if anonymous.status_code != 200:
                    wrong.append(f"{row} without a token: {anonymous.status_code}, not 200")
            elif (anonymous.status_code, anonymous.json().get("error")) != (401, "unauthorized"):
                wrong.append(f"{row} without a token: {anonymous.status_code}, not 401")
            for role in ROLES:
                answer = ask(service, method, path, f"only-{role}")
                status = answer.status_code
                if access == OPEN or role in access:
                    if status in (401, 403) or status >= 500:
                        wrong.append(f"{row} as {role}: {status}, but the row admits {role}")
                elif (status, answer.json().get("error")) != (403, "forbidden"):
                    wrong.append(f"{row} as {role}: {status}, not 403: the row refuses {role}")
    finally:
        service.stop()
    assert not wrong, "\n".join(wrong)
