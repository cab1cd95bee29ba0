"""Complaints become one ticket each, are assigned round-robin within capacity, move through the
status machine (invalid moves refused), get a VIP priority, record a survey, and escalate."""

from collections.abc import Sequence
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry
from tickets_fakes import InMemoryTickets

from crm_contracts import CloudEvent, encode_event, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.callcenter import v1 as callcenter_v1
from crm_contracts.members import v1 as members_v1
from crm_runtime.consumer import BatchConsumer
from crm_runtime.dlq import DeadLetters, InboundRecord
from crm_runtime.health import Health
from crm_runtime.metrics import RuntimeMetrics
from crm_tickets.domain.agent import Agent
from crm_tickets.domain.calendar import BusinessCalendar
from crm_tickets.domain.rules import TicketRules
from crm_tickets.domain.ticket import InvalidTransitionError
from crm_tickets.handlers import (
    CONSUMED_TYPES,
    apply_events,
    assignment_sweep,
    complaint_ticket_id,
    sla_sweep,
    to_messages,
)

pytestmark = pytest.mark.unit
SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=SH)  # a Monday morning
RULES = TicketRules(calendar=BusinessCalendar(opens=time(9), closes=time(18)))
_ids = iter(range(1_000_000))


def ev(event_type: str, customer: str, data: Any, at: datetime = T0) -> CloudEvent[Any]:
    return new_event(
        event_type, source="test", subject=customer, data=data, id=f"e{next(_ids)}", time=at
    )


def complaint(
    customer: str, complaint_id: str, severity: str = "medium", **extra: Any
) -> CloudEvent[Any]:
    data = callcenter_v1.ComplaintReported(
        complaint_id=complaint_id,
        channel="phone",
        description="包裹破损 / parcel arrived broken, call 13800138000",
        category="delivery",
        severity=severity,
        **extra,
    )
    return ev(callcenter_v1.COMPLAINT_REPORTED, customer, data)


def repo_with_agents(*agents: Agent) -> InMemoryTickets:
    repo = InMemoryTickets(RULES, T0)
    for agent in agents:
        repo.agents[agent.agent_id] = agent
    return repo


async def run(repo: InMemoryTickets, *events: CloudEvent[Any]) -> None:
    await apply_events(list(events), repo, rules=RULES, clock=lambda: T0)


async def test_a_complaint_opens_one_ticket_even_when_delivered_again() -> None:
    repo = repo_with_agents()
    first = complaint("c1", "k1")
    await run(repo, first, first)
    await run(repo, complaint("c1", "k1"))  # the same complaint under another event id
    assert list(repo.tickets) == [complaint_ticket_id("k1")]
    ticket = repo.tickets[complaint_ticket_id("k1")]
    assert (ticket.priority, ticket.queue, ticket.status) == ("P3", "delivery", "new")
    assert repo.published() == ["ticket.opened"]
    assert "13800138000" not in str([m.event.data for m in repo.outbox])


async def test_tickets_are_assigned_round_robin_within_capacity() -> None:
    repo = repo_with_agents(
        Agent("a1", "Ann", ["delivery"], capacity=1), Agent("a2", "Bo", ["delivery"], capacity=2)
    )
    await run(repo, *(complaint("c1", f"k{i}") for i in range(4)))
    assignees = sorted((t.assignee or "-") for t in repo.tickets.values())
    assert assignees == ["-", "a1", "a2", "a2"]
    assert repo.published().count("ticket.assigned") == 3
    # When a1 resolves its ticket, the waiting ticket goes to a1 at the next assignment sweep.
    mine = next(t for t in repo.tickets.values() if t.assignee == "a1")
    mine.resolve(["carrier"], "a1", T0)
    repo.tickets[mine.ticket_id] = mine
    assert await assignment_sweep(T0, repo, rules=RULES) == 1
    assert sorted(t.assignee or "-" for t in repo.tickets.values()) == ["a1", "a1", "a2", "a2"]


async def test_a_vip_customer_s_ticket_gets_the_higher_priority() -> None:
    repo = repo_with_agents()
    grade = archive_v1.CustomerGradeChanged(grade="vip", previous_grade="ordinary")
    await run(repo, ev(archive_v1.CUSTOMER_GRADE_CHANGED, "vip1", grade))
    await run(
        repo, complaint("vip1", "k1", severity="high"), complaint("c2", "k2", severity="high")
    )
    assert repo.tickets[complaint_ticket_id("k1")].priority == "P1"
    assert repo.tickets[complaint_ticket_id("k2")].priority == "P2"


async def test_grades_are_read_only_for_the_customers_who_complain() -> None:
    """A batch of grade changes (most of what tickets reads of archive.v1) reads no grade; a
    complaint after its customer's promotion in the same batch has the new grade's priority."""
    repo = repo_with_agents()
    grade = archive_v1.CustomerGradeChanged(grade="vip", previous_grade="ordinary")
    await run(repo, *(ev(archive_v1.CUSTOMER_GRADE_CHANGED, f"v{i}", grade) for i in range(3)))
    assert repo.grade_reads == []
    await run(
        repo,
        ev(archive_v1.CUSTOMER_GRADE_CHANGED, "v9", grade),
        complaint("v9", "k1", severity="high"),
        complaint("v0", "k2", severity="high"),
    )
    assert repo.grade_reads == [["v0", "v9"]]
    assert repo.tickets[complaint_ticket_id("k1")].priority == "P1"
    assert repo.tickets[complaint_ticket_id("k2")].priority == "P1"


async def test_a_survey_records_csat_and_a_low_score_flags_the_ticket() -> None:
    repo = repo_with_agents()
    await run(repo, complaint("c1", "k1"))
    ticket_id = complaint_ticket_id("k1")
    survey = callcenter_v1.SurveyAnswered(survey_id="s1", ticket_id=ticket_id, csat=2, nps=3)
    await run(repo, ev(callcenter_v1.SURVEY_ANSWERED, "c1", survey))
    await run(repo, ev(callcenter_v1.SURVEY_ANSWERED, "c1", survey))  # again: nothing new
    ticket = repo.tickets[ticket_id]
    assert ticket.survey is not None
    assert (ticket.survey.csat, ticket.survey.nps) == (2, 3)
    assert ticket.flagged_for_review
    assert repo.published(ticket_id).count("ticket.csat_recorded") == 1


async def test_the_status_machine_refuses_invalid_moves_with_a_reason() -> None:
    repo = repo_with_agents()
    await run(repo, complaint("c1", "k1"))
    ticket = repo.tickets[complaint_ticket_id("k1")]
    with pytest.raises(InvalidTransitionError, match="assign it first"):
        ticket.change_status("in_progress", "a1", T0)
    ticket.assign("a1", "sup", T0, manual=True)
    with pytest.raises(InvalidTransitionError, match="cannot become closed"):
        ticket.change_status("closed", "a1", T0)
    with pytest.raises(ValueError, match="root-cause"):
        ticket.resolve([" "], "a1", T0)
    ticket.resolve(["packaging"], "a1", T0)
    with pytest.raises(InvalidTransitionError):
        ticket.resolve(["again"], "a1", T0)
    changes = ticket.reopen("张三 says still broken", "a1", T0, RULES)
    assert ticket.status == "in_progress"
    assert [h.action for h in ticket.history] == ["opened", "assigned", "resolved", "reopened"]
    [reopened] = [m.event for m in to_messages(ticket, changes, "c") if "reopened" in m.event.type]
    assert reopened.data.reason is None, "free text is not published on a topic kept forever"


async def test_an_unanswered_p1_warns_breaches_and_goes_to_the_supervisors() -> None:
    repo = repo_with_agents()
    await run(repo, complaint("c1", "k1", severity="critical"))
    ticket_id = complaint_ticket_id("k1")
    await sla_sweep(datetime(2026, 11, 23, 10, 25, tzinfo=SH), repo, rules=RULES)
    await sla_sweep(datetime(2026, 11, 23, 10, 31, tzinfo=SH), repo, rules=RULES)
    await sla_sweep(datetime(2026, 11, 23, 10, 40, tzinfo=SH), repo, rules=RULES)
    assert repo.published(ticket_id) == [
        "ticket.opened",
        "ticket.sla_warning",
        "ticket.sla_breached",
        "ticket.escalated",
    ]
    assert repo.tickets[ticket_id].queue == "supervisors"


async def test_a_resolved_ticket_closes_itself_after_the_auto_close_period() -> None:
    repo = repo_with_agents()
    await run(repo, complaint("c1", "k1"))
    ticket = repo.tickets[complaint_ticket_id("k1")]
    ticket.resolve(["carrier"], "a1", T0)
    repo.tickets[ticket.ticket_id] = ticket
    await sla_sweep(datetime(2026, 11, 30, 9, 59, tzinfo=SH), repo, rules=RULES)
    assert repo.tickets[ticket.ticket_id].status == "resolved"
    await sla_sweep(datetime(2026, 11, 30, 10, 0, tzinfo=SH), repo, rules=RULES)
    assert repo.tickets[ticket.ticket_id].status == "closed"
    with pytest.raises(InvalidTransitionError, match="only a resolved ticket"):
        repo.tickets[ticket.ticket_id].reopen(None, "a1", T0, RULES)


async def test_a_survey_before_its_ticket_is_kept_and_lands_when_the_ticket_opens() -> None:
    repo = repo_with_agents()
    ticket_id = complaint_ticket_id("k1")
    survey = callcenter_v1.SurveyAnswered(survey_id="s1", ticket_id=ticket_id, csat=4, nps=8)
    await run(repo, ev(callcenter_v1.SURVEY_ANSWERED, "c1", survey))
    assert repo.tickets == {}
    await run(repo, complaint("c1", "k1"))
    ticket = repo.tickets[ticket_id]
    assert ticket.survey is not None
    assert (ticket.survey.csat, ticket.survey.nps) == (4, 8)
    assert [h.action for h in ticket.history] == ["opened", "survey"]
    assert repo.pending == {}
    # Both in one batch, survey first: the same record.
    other = complaint_ticket_id("k2")
    early = callcenter_v1.SurveyAnswered(survey_id="s2", ticket_id=other, csat=1)
    await run(repo, ev(callcenter_v1.SURVEY_ANSWERED, "c2", early), complaint("c2", "k2"))
    assert repo.tickets[other].flagged_for_review


async def test_a_survey_naming_another_customer_s_ticket_is_dead_lettered_with_its_reason() -> None:
    """Issue 18: a survey's `ticket_id` was not checked against its event's customer, so anyone
    able to send a survey could score (and flag) another customer's ticket. It now goes to
    `tickets.dlq.v1`, saying why; the customer's own survey in the same batch still lands."""
    repo = repo_with_agents()
    await run(repo, complaint("c1", "k1"), complaint("c2", "k2"))
    ticket_id = complaint_ticket_id("k1")
    forged = callcenter_v1.SurveyAnswered(survey_id="s-forged", ticket_id=ticket_id, csat=1)
    own = callcenter_v1.SurveyAnswered(survey_id="s-own", ticket_id=complaint_ticket_id("k2"))
    batch = [
        ev(callcenter_v1.SURVEY_ANSWERED, "c2", forged),
        ev(callcenter_v1.SURVEY_ANSWERED, "c2", own),
    ]
    sent: list[dict[str, str]] = []

    async def send(topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        sent.append({"topic": topic, **headers})

    async def handle(events: Sequence[CloudEvent[Any]]) -> int:
        return await apply_events(events, repo, rules=RULES, clock=lambda: T0)

    consumer = BatchConsumer(
        handle,
        DeadLetters(send, service="tickets", consumer_group="tickets"),
        health=Health(),
        metrics=RuntimeMetrics(CollectorRegistry(), "tickets"),
        accepted_types=CONSUMED_TYPES,
    )
    await consumer.process(
        [
            InboundRecord("callcenter.v1", 0, offset, b"c2", encode_event(event))
            for offset, event in enumerate(batch)
        ]
    )
    assert [(d["topic"], d["x-dlq-source-offset"]) for d in sent] == [("tickets.dlq.v1", "0")]
    assert "another customer's" in sent[0]["x-dlq-reason"]
    assert repo.tickets[ticket_id].survey is None
    assert not repo.tickets[ticket_id].flagged_for_review
    assert "ticket.csat_recorded" not in repo.published(ticket_id)
    own_ticket = repo.tickets[complaint_ticket_id("k2")].survey
    assert own_ticket is not None
    assert own_ticket.survey_id == "s-own"


async def test_a_kept_survey_lands_only_on_a_ticket_of_its_customer() -> None:
    """A survey that came before its ticket is kept; when the ticket opens for another customer,
    it is dropped (it was already committed: a log line names it), never recorded."""
    repo = repo_with_agents()
    ticket_id = complaint_ticket_id("k1")
    forged = callcenter_v1.SurveyAnswered(survey_id="s-forged", ticket_id=ticket_id, csat=1)
    await run(repo, ev(callcenter_v1.SURVEY_ANSWERED, "c2", forged))
    assert ticket_id in repo.pending
    await run(repo, complaint("c1", "k1"))
    assert repo.tickets[ticket_id].survey is None
    assert not repo.tickets[ticket_id].flagged_for_review
    assert repo.pending == {}


async def test_an_erasure_request_drops_the_texts_keeps_the_ticket_and_confirms_once() -> None:
    repo = repo_with_agents(Agent("a1", "Agent 1", ["delivery"], 5))
    await run(repo, complaint("c1", "K-1"), complaint("c2", "K-2"))
    erase = ev(members_v1.CUSTOMER_ERASURE_REQUESTED, "c1", members_v1.CustomerErasureRequested())
    await run(repo, erase)
    await run(repo, erase)  # redelivered: the inbox drops it
    erased = repo.tickets[complaint_ticket_id("K-1")]
    assert erased.description == ""
    assert erased.priority
    assert erased.category == "delivery"
    assert repo.tickets[complaint_ticket_id("K-2")].description.startswith("包裹破损")
    assert repo.erased == {"c1"}
    confirmations = [m.event for m in repo.outbox if m.event.type == "customer.erasure_completed"]
    assert [(e.subject, e.data.service) for e in confirmations] == [("c1", "tickets")]
