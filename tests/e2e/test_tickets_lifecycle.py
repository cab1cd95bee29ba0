"""Tickets on the real stack: a complaint becomes an assigned ticket, is resolved with a root
cause and surveyed; a VIP gets the higher priority; an unanswered P1 warns, breaches and goes to
the supervisors (injected clock); duplicates open one ticket; invalid moves are 4xx."""

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from stackutil import ServiceProcess, Stack, cloud_event, collect, eventually, send, unique

pytestmark = pytest.mark.e2e
ALWAYS_OPEN = {
    "rules__calendar__opens": "00:00",
    "rules__calendar__closes": "00:00",
    "rules__calendar__working_weekdays": json.dumps(list(range(7))),
}


@pytest.fixture(scope="module")
def tickets(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated(
        "tickets", stack, clock_override_enabled="true", **ALWAYS_OPEN
    ).start()
    yield service
    service.stop()


def complaint(customer: str, complaint_id: str, severity: str, category: str = "delivery") -> bytes:
    return cloud_event(
        "complaint.reported",
        customer,
        {
            "complaint_id": complaint_id,
            "channel": "phone",
            "description": "快递丢件 / the parcel never arrived",
            "category": category,
            "severity": severity,
            "order_id": "o-1",
        },
    )


def ticket_of(tickets: ServiceProcess, customer: str, check: Any = bool) -> dict[str, Any]:
    def fetch() -> dict[str, Any] | None:
        found = tickets.get("/tickets", customer_id=customer).json()["items"]
        if not found:
            return None
        ticket = dict(tickets.get(f"/tickets/{found[0]['id']}").json())
        return ticket if check(ticket) else None

    return dict(eventually(fetch, timeout=20))


def published(stack: Stack, ticket_id: str, until: Any) -> list[str]:
    records = asyncio.run(
        collect(
            stack.bootstrap,
            "tickets.v1",
            lambda r: json.loads(r.value)["data"]["ticket_id"] == ticket_id,
            until=lambda kept: until([json.loads(r.value)["type"] for r in kept]),
            timeout=20,
        )
    )
    return [json.loads(r.value)["type"] for r in records]


def test_complaint_to_assigned_ticket_to_resolution_to_survey_with_vip_priority(
    stack: Stack, tickets: ServiceProcess
) -> None:
    agent = unique("agent")
    put = tickets.put(f"/agents/{agent}", {"name": "Li", "queues": ["delivery"], "capacity": 50})
    assert put.status_code == 200, put.text
    customer = unique("vip")
    grade = cloud_event(
        "customer.grade_changed", customer, {"grade": "vip", "previous_grade": "ordinary"}
    )
    before = tickets.processed("archive.v1", "customer.grade_changed")
    send(stack, "archive.v1", (customer, grade))
    # The grade is read when the complaint opens the ticket, and the two topics are not ordered.
    eventually(lambda: tickets.processed("archive.v1", "customer.grade_changed") > before)
    send(stack, "callcenter.v1", (customer, complaint(customer, unique("k"), "high")))
    ticket = ticket_of(tickets, customer)
    assert ticket["priority"] == "P1"  # high is P2; a VIP's ticket is one level higher
    assert ticket["status"] == "assigned"
    assert ticket["assignee"] is not None
    ticket_id = ticket["id"]

    assert (
        tickets.post(f"/tickets/{ticket_id}/status", {"status": "in_progress"}).status_code == 200
    )
    reply = tickets.post(
        f"/tickets/{ticket_id}/comment", {"text": "已补发 / resent", "public": True}
    )
    assert reply.json()["first_response_at"] is not None
    resolved = tickets.post(f"/tickets/{ticket_id}/resolve", {"root_causes": ["carrier-lost"]})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"

    survey = cloud_event(
        "survey.answered",
        customer,
        {"survey_id": unique("s"), "ticket_id": ticket_id, "csat": 5, "nps": 9},
    )
    send(stack, "callcenter.v1", (customer, survey))
    done = ticket_of(tickets, customer, lambda t: t["survey"] is not None)
    assert (done["survey"]["csat"], done["survey"]["nps"]) == (5, 9)
    assert not done["flagged_for_review"]
    assert [h["action"] for h in done["history"]] == [
        "opened",
        "assigned",
        "status",
        "commented",
        "resolved",
        "survey",
    ]
    events = published(stack, ticket_id, lambda kept: "ticket.csat_recorded" in kept)
    assert events == [
        "ticket.opened",
        "ticket.assigned",
        "ticket.status_changed",
        "ticket.status_changed",
        "ticket.status_changed",
        "ticket.resolved",
        "ticket.csat_recorded",
    ]
    report = tickets.get("/reports/root-causes").json()
    assert report["by_category"]["delivery"]["carrier-lost"] >= 1


def test_an_unanswered_p1_warns_then_breaches_and_lands_with_the_supervisors(
    stack: Stack, tickets: ServiceProcess
) -> None:
    customer = unique("p1")
    opened_at = datetime.now(UTC)
    send(
        stack, "callcenter.v1", (customer, complaint(customer, unique("k"), "critical", "billing"))
    )
    ticket = ticket_of(tickets, customer)
    assert ticket["priority"] == "P1"
    ticket_id = ticket["id"]
    warn_at = (opened_at + timedelta(minutes=25)).isoformat()
    assert tickets.post("/ops/sweeps/sla", at=warn_at).status_code == 200
    breach_at = (opened_at + timedelta(minutes=31)).isoformat()
    assert tickets.post("/ops/sweeps/sla", at=breach_at).status_code == 200
    events = published(stack, ticket_id, lambda kept: "ticket.escalated" in kept)
    assert events == [
        "ticket.opened",
        "ticket.sla_warning",
        "ticket.sla_breached",
        "ticket.escalated",
    ]
    escalated = tickets.get(f"/tickets/{ticket_id}").json()
    assert escalated["queue"] == "supervisors"
    assert escalated["sla"]["first_response"]["breached"]
    listed = tickets.get("/tickets", queue="supervisors", breached="true").json()["items"]
    assert ticket_id in [t["id"] for t in listed]


def test_a_duplicate_complaint_opens_one_ticket_and_bad_requests_are_4xx(
    stack: Stack, tickets: ServiceProcess
) -> None:
    customer, complaint_id = unique("dup"), unique("k")
    event = complaint(customer, complaint_id, "low", "product")
    send(stack, "callcenter.v1", (customer, event), (customer, event))
    send(stack, "callcenter.v1", (customer, complaint(customer, complaint_id, "low", "product")))
    ticket = ticket_of(tickets, customer)
    send(stack, "callcenter.v1", (customer, complaint(customer, unique("k2"), "low", "product")))
    eventually(lambda: len(tickets.get("/tickets", customer_id=customer).json()["items"]) == 2)
    listed = tickets.get("/tickets", customer_id=customer).json()["items"]
    assert sorted(t["priority"] for t in listed) == ["P4", "P4"]
    ticket_id = ticket["id"]
    closing = tickets.post(f"/tickets/{ticket_id}/status", {"status": "closed"})
    assert closing.status_code == 409
    assert "cannot become closed" in closing.json()["message"]
    assert tickets.post(f"/tickets/{ticket_id}/resolve", {"root_causes": []}).status_code == 422
    assert tickets.get("/tickets/T-nothing").status_code == 404
    assert tickets.post(f"/tickets/{ticket_id}/assign", {"assignee": "ghost"}).status_code == 422
    manual = tickets.post("/tickets", {"customer_id": customer, "description": "walk-in"})
    assert manual.status_code == 201
    assert manual.json()["priority"] == "P3"
