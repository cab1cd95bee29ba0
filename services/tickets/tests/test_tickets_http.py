"""The routes on the in-memory fakes: they translate requests into commands and queries, and the
domain's refusals into status codes (404 unknown, 409 not allowed or full, 422 invalid); every
answer with a ticket's texts is audited."""

from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_tickets_flow import RULES, T0
from tickets_fakes import InMemoryTickets

from crm_runtime.auth import Authenticator, Principal
from crm_tickets.entrypoints.http import tickets_router

pytestmark = pytest.mark.unit
TOKEN = {"Authorization": "Bearer staff"}


class Audit:
    def __init__(self) -> None:
        self.reads: list[tuple[str, list[str]]] = []

    async def record(self, principal: Principal, route: str, customer_ids: Iterable[str]) -> None:
        self.reads.append((route, list(customer_ids)))


@pytest.fixture
def repo() -> InMemoryTickets:
    return InMemoryTickets(RULES, T0)


@pytest.fixture
def audit() -> Audit:
    return Audit()


@pytest.fixture
def client(repo: InMemoryTickets, audit: Audit) -> TestClient:
    auth = Authenticator(
        {
            "staff": ["agent", "supervisor", "ops"],
            "shop": {"user": "shop-bot", "roles": ["integration"]},
        }
    )
    rules = replace(RULES, max_comments=2)
    app = FastAPI()
    app.include_router(tickets_router(repo, auth, audit, rules, lambda: T0, report_max_days=31))
    return TestClient(app, headers=TOKEN)


def new_ticket(
    client: TestClient,
    customer: str = "c1",
    headers: dict[str, str] | None = None,
    status: int = 201,
) -> dict[str, Any]:
    body = {"customer_id": customer, "description": "包裹破损", "category": "delivery"}
    response = client.post("/tickets", json=body, headers=headers)
    assert response.status_code == status, response.text
    return dict(response.json())


def test_intake_is_idempotent_by_key_and_a_replay_is_an_audited_read(
    client: TestClient, audit: Audit
) -> None:
    first = new_ticket(client, headers={"Idempotency-Key": "k-1"})
    assert audit.reads == []
    again = new_ticket(client, headers={"Idempotency-Key": "k-1"}, status=200)
    assert again["id"] == first["id"]
    assert audit.reads == [("POST /tickets", ["c1"])]
    assert first["sla"]["first_response"]["due_at"] == "2026-11-23T14:00:00+08:00"


def test_another_caller_s_same_key_opens_its_own_ticket_not_a_read_of_the_first(
    client: TestClient, audit: Audit
) -> None:
    """Issue 18: an `integration` token reusing (or guessing) a key got another caller's ticket
    back, description and all, though it may not GET a ticket."""
    first = new_ticket(client, headers={"Idempotency-Key": "k-1"})
    theirs = new_ticket(client, "c2", {"Idempotency-Key": "k-1", "Authorization": "Bearer shop"})
    assert theirs["id"] != first["id"]
    assert theirs["customer_id"] == "c2"
    assert audit.reads == []


def test_a_key_reused_with_another_body_is_a_422_that_says_so(client: TestClient) -> None:
    new_ticket(client, headers={"Idempotency-Key": "k-1"})
    response = client.post(
        "/tickets",
        json={"customer_id": "c1", "description": "另一件事"},
        headers={"Idempotency-Key": "k-1"},
    )
    assert response.status_code == 422, response.text
    assert "different request" in response.json()["detail"]


def test_a_ticket_is_read_audited_and_listed_by_page(client: TestClient, audit: Audit) -> None:
    ids = sorted(str(new_ticket(client, f"c{n}")["id"]) for n in range(3))
    ticket = client.get(f"/tickets/{ids[0]}").json()
    assert ticket["description"] == "包裹破损"
    assert audit.reads == [("GET /tickets/{ticket_id}", [ticket["customer_id"]])]
    assert client.get("/tickets/T-none").status_code == 404
    page = client.get("/tickets", params={"status": "new", "limit": 2}).json()
    assert [t["id"] for t in page["items"]] == ids[:2]
    rest = client.get("/tickets", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert ([t["id"] for t in rest["items"]], rest["next_cursor"]) == (ids[2:], None)
    assert client.get("/tickets", params={"status": "resolved"}).json()["items"] == []


def test_the_domain_s_refusals_become_status_codes(client: TestClient, audit: Audit) -> None:
    ticket_id = new_ticket(client)["id"]
    route = f"/tickets/{ticket_id}"
    assert client.post("/tickets/T-none/comment", json={"text": "x"}).status_code == 404
    assert client.post(f"{route}/assign", json={"assignee": "nobody"}).status_code == 422
    refused = client.post(f"{route}/status", json={"status": "in_progress"})
    assert (refused.status_code, "assign it first" in refused.text) == (409, True)
    assert client.post(f"{route}/resolve", json={"root_causes": [" "]}).status_code == 422
    assert client.post(f"{route}/reopen", json={}).status_code == 409
    for n in range(2):
        assert client.post(f"{route}/comment", json={"text": f"c{n}"}).status_code == 200
    full = client.post(f"{route}/comment", json={"text": "one too many"})
    assert (full.status_code, "open a new ticket" in full.text) == (409, True)
    resolved = client.post(f"{route}/resolve", json={"root_causes": ["carrier"]})
    assert resolved.json()["status"] == "resolved"
    assert [r for r, _ in audit.reads].count("POST /tickets/{ticket_id}/comment") == 2


def test_agents_are_put_read_and_deactivated(client: TestClient) -> None:
    agent = {"name": "Ann", "queues": ["delivery"], "capacity": 5}
    assert client.put("/agents/a1", json=agent).json()["open_tickets"] == 0
    ticket_id = new_ticket(client)["id"]
    assigned = client.post(f"/tickets/{ticket_id}/assign", json={"assignee": "a1"})
    assert assigned.json()["assignee"] == "a1"
    assert client.get("/agents/a1").json()["open_tickets"] == 1
    assert client.get("/agents/nobody").status_code == 404
    assert client.delete("/agents/a1").json()["active"] is False
    assert [a["active"] for a in client.get("/agents").json()] == [False]
    assert client.delete("/agents/nobody").status_code == 404


def test_reports_answer_for_a_range_and_refuse_a_bad_one(client: TestClient) -> None:
    ticket_id = new_ticket(client)["id"]
    client.post(f"/tickets/{ticket_id}/comment", json={"text": "在查", "public": True})
    window = {"since": (T0 - timedelta(days=1)).isoformat(), "until": T0.isoformat()}
    assert client.get("/reports/sla", params=window).json()["all"]["tickets"] == 0  # [since, T0)
    window["until"] = (T0 + timedelta(hours=1)).isoformat()
    sla = client.get("/reports/sla", params=window).json()
    assert (sla["all"]["tickets"], sla["all"]["mean_first_response_s"]) == (1, 0)
    causes = client.get("/reports/root-causes", params=window).json()
    assert causes["by_category"] == {"delivery": {"(unresolved)": 1}}
    default = client.get("/reports/sla").json()  # the last 30 days
    assert default["since"] == (T0 - timedelta(days=30)).isoformat()
    backwards = {"since": window["until"], "until": window["since"]}
    assert client.get("/reports/sla", params=backwards).status_code == 422
    too_long = {"since": (T0 - timedelta(days=32)).isoformat(), "until": T0.isoformat()}
    refused = client.get("/reports/root-causes", params=too_long)
    assert (refused.status_code, "at most 31 days" in refused.text) == (422, True)


def test_my_tickets_are_those_assigned_to_my_user_id_and_history_names_me(
    repo: InMemoryTickets, audit: Audit
) -> None:
    """An agent's id is its user's id: `assignee=me` lists the signed-in user's tickets, and
    what she does is recorded under her user id."""
    auth = Authenticator(
        {
            "t-07": {"user": "agent-07", "roles": ["agent"]},
            "t-sup": {"user": "sup-01", "roles": ["supervisor"]},
        }
    )
    app = FastAPI()
    app.include_router(tickets_router(repo, auth, audit, RULES, lambda: T0, report_max_days=31))
    sup = TestClient(app, headers={"Authorization": "Bearer t-sup"})
    agent = TestClient(app, headers={"Authorization": "Bearer t-07"})
    assert sup.put(
        "/agents/agent-07", json={"name": "Ann", "queues": ["x"], "capacity": 5}
    ).is_success
    assert (
        sup.put(
            "/agents/not a user", json={"name": "B", "queues": ["x"], "capacity": 1}
        ).status_code
        == 422
    )
    mine, other = new_ticket(sup, "c1")["id"], new_ticket(sup, "c2")["id"]
    assigned = sup.post(f"/tickets/{mine}/assign", json={"assignee": "agent-07"}).json()
    assert (assigned["assignee"], assigned["history"][-1]["actor"]) == ("agent-07", "sup-01")
    agent.post(f"/tickets/{mine}/comment", json={"text": "called back"})
    listed = agent.get("/tickets", params={"assignee": "me"}).json()["items"]
    assert [t["id"] for t in listed] == [mine]
    assert other not in [
        t["id"] for t in sup.get("/tickets", params={"assignee": "me"}).json()["items"]
    ]
    history = agent.get(f"/tickets/{mine}").json()["history"]
    assert history[-1]["actor"] == "agent-07"


def test_list_rows_carry_the_sla_clocks_without_a_personal_data_read(
    client: TestClient, audit: Audit
) -> None:
    """A queue with its countdowns is one call: each row has the ticket's own SLA clocks (due
    times, breached), and still no texts, so listing is not an audited read."""
    ticket = new_ticket(client)
    audit.reads.clear()
    (row,) = client.get("/tickets").json()["items"]
    assert audit.reads == []
    assert not {"description", "comments", "history"} & set(row)
    assert row["sla"] == ticket["sla"]
    assert set(row["sla"]) == {"first_response", "resolution"}
    assert row["sla"]["first_response"]["due_at"] is not None
    assert row["sla"]["resolution"]["breached"] is False
    assert (row["first_response_at"], row["resolved_at"]) == (None, None)


def test_an_empty_idempotency_key_is_refused_not_a_server_error(client: TestClient) -> None:
    """Found by the HTTP fuzz test: an empty key made a fixed ticket id that was never looked up
    first, so the second such intake collided with the first (503)."""
    for _ in range(2):
        response = client.post(
            "/tickets",
            json={"customer_id": "c1", "description": "包裹破损"},
            headers={"Idempotency-Key": ""},
        )
        assert response.status_code == 422, response.text
