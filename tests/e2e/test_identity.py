"""People sign in as themselves: with tokens naming two users (a supervisor and an agent), the
archive's timeline names the supervisor who patched a customer, the agent's assigned ticket is
listed by `assignee=me`, and the audit of a personal-data read names the reader's user id."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from stackutil import DEV_TOKEN, ServiceProcess, Stack, cloud_event, eventually, send, unique

pytestmark = pytest.mark.e2e
SUPERVISOR, AGENT = "sup-01", "agent-07"
TOKENS = {
    DEV_TOKEN: ["agent", "supervisor", "ops", "integration"],  # the earlier form keeps working
    "e2e-sup-token": {"user": SUPERVISOR, "roles": ["supervisor"]},
    "e2e-agent-token": {"user": AGENT, "roles": ["agent"]},
}
AS_SUPERVISOR = {"Authorization": "Bearer e2e-sup-token"}
AS_AGENT = {"Authorization": "Bearer e2e-agent-token"}


@pytest.fixture(scope="module")
def services(stack: Stack) -> Iterator[dict[str, ServiceProcess]]:
    started: dict[str, ServiceProcess] = {}
    try:
        for name in ("archive", "tickets"):
            service = ServiceProcess.isolated(name, stack)
            service.env["CRM_API_TOKENS"] = json.dumps(TOKENS)
            started[name] = service.start()
        yield started
    finally:
        for service in started.values():
            service.stop()


def registered(stack: Stack, archive: ServiceProcess) -> str:
    customer = unique("who")
    data = {"name": "欧阳娜娜", "phone": f"+86 139{abs(hash(customer)) % 10**8:08d}"}
    event = cloud_event("customer.registered", customer, data, time=datetime.now(UTC))
    send(stack, "members.v1", (customer, event))
    eventually(lambda: archive.get(f"/customers/{customer}").status_code == 200, timeout=20)
    return customer


def test_the_timeline_names_the_supervisor_who_patched_a_customer(
    stack: Stack, services: dict[str, ServiceProcess]
) -> None:
    archive = services["archive"]
    customer = registered(stack, archive)
    version = archive.get(f"/customers/{customer}").headers["ETag"]
    patched = httpx.patch(
        f"{archive.url}/customers/{customer}",
        headers={**AS_SUPERVISOR, "If-Match": version},
        json={"account_owner": AGENT},
        timeout=10,
    )
    assert patched.status_code == 200, patched.text
    timeline = archive.get(f"/customers/{customer}/timeline").json()["items"]
    entry = next(item for item in timeline if item["type"] == "customer.patched")
    assert entry["data"] == {"fields": ["account_owner"], "by": SUPERVISOR}


def test_an_agent_s_tickets_are_listed_by_assignee_me_and_her_actions_name_her(
    services: dict[str, ServiceProcess],
) -> None:
    tickets = services["tickets"]
    agent = {"name": "Agent 07", "queues": ["no-auto-assignment"], "capacity": 10}
    assert tickets.put(f"/agents/{AGENT}", agent).status_code == 200
    assert tickets.put("/agents/not a user id", agent).status_code == 422
    ids = []
    for customer in (unique("mine"), unique("other")):
        opened = tickets.post("/tickets", {"customer_id": customer, "description": "包裹未到"})
        assert opened.status_code == 201, opened.text
        ids.append(opened.json()["id"])
    mine, other = ids
    assign = httpx.post(
        f"{tickets.url}/tickets/{mine}/assign",
        headers=AS_SUPERVISOR,
        json={"assignee": AGENT},
        timeout=10,
    )
    assert assign.status_code == 200, assign.text
    assert assign.json()["history"][-1] | {"at": None} == {
        "at": None,
        "actor": SUPERVISOR,
        "action": "assigned",
        "details": {"assignee": AGENT, "manual": True},
    }
    comment = httpx.post(
        f"{tickets.url}/tickets/{mine}/comment",
        headers=AS_AGENT,
        json={"text": "called the customer back"},
        timeout=10,
    )
    assert comment.json()["history"][-1]["actor"] == AGENT

    def my_tickets(headers: dict[str, str]) -> list[str]:
        found = httpx.get(
            f"{tickets.url}/tickets", headers=headers, params={"assignee": "me"}, timeout=10
        )
        assert found.status_code == 200, found.text
        return [t["id"] for t in found.json()["items"]]

    assert my_tickets(AS_AGENT) == [mine]
    assert other not in my_tickets(AS_AGENT)
    assert my_tickets(AS_SUPERVISOR) == []


def test_the_audit_of_a_personal_data_read_names_the_reader(
    stack: Stack, services: dict[str, ServiceProcess]
) -> None:
    archive = services["archive"]
    customer = registered(stack, archive)
    read = httpx.get(f"{archive.url}/customers/{customer}", headers=AS_AGENT, timeout=10)
    assert read.status_code == 200
    trail: list[dict[str, Any]] = archive.get("/audit/pii-reads", actor=AGENT).json()["items"]
    mine = [r for r in trail if r["customer_id"] == customer]
    assert [(r["actor"], r["roles"], r["route"]) for r in mine] == [
        (AGENT, ["agent"], "GET /customers/{customer_id}")
    ]
    assert mine[0]["token_id"] != AGENT  # which token she used, to revoke it if it leaked
    assert "e2e-agent-token" not in json.dumps(trail)


def test_an_idempotency_key_of_post_tickets_is_its_caller_s_own(
    services: dict[str, ServiceProcess],
) -> None:
    """Issue 18: a key was global, so another caller's same key answered the first caller's
    ticket (texts and all). Now: the caller's retry answers its ticket (200), another caller's
    same key opens another ticket (201), the same key with another body is a 422."""
    tickets, key = services["tickets"], unique("intake-key")

    def intake(headers: dict[str, str], description: str = "包裹未到") -> httpx.Response:
        body = {"customer_id": "c-intake-key", "description": description}
        return httpx.post(
            f"{tickets.url}/tickets",
            headers={**headers, "Idempotency-Key": key},
            json=body,
            timeout=10,
        )

    first = intake(AS_AGENT)
    assert first.status_code == 201, first.text
    retry = intake(AS_AGENT)
    assert (retry.status_code, retry.json()["id"]) == (200, first.json()["id"])
    other_caller = intake(AS_SUPERVISOR)
    assert other_caller.status_code == 201, other_caller.text
    assert other_caller.json()["id"] != first.json()["id"]
    reused = intake(AS_AGENT, "另一件事")
    assert reused.status_code == 422, reused.text
    assert "different request" in reused.json()["message"]
