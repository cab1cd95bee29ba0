"""A ticket of an agreement customer (协议客户) takes the agreement's first-response SLA when it is
stricter than the priority's, while the agreement is active; amendments, renewals and
terminations (`relations.v1`) move what later tickets get, never what an open ticket promised."""

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from test_tickets_commands import Clock, intake
from test_tickets_flow import RULES, T0, complaint, ev, repo_with_agents, run

from crm_contracts import CloudEvent
from crm_contracts.relations import v1 as relations_v1
from crm_runtime.crypto import NO_KEY
from crm_tickets import commands
from crm_tickets.adapters.documents import (
    agreement_document,
    agreement_from_document,
    from_document,
    to_document,
)
from crm_tickets.handlers import complaint_ticket_id, sla_sweep

pytestmark = pytest.mark.unit
HOUR = 3600
# T0 is Monday 23 Nov 2026, 10:00 in Shanghai; a medium complaint is P3: 4 h to first response.


def terms(hours: int | None) -> relations_v1.AgreementTerms:
    return relations_v1.AgreementTerms(
        period="quarter",
        measure="spend",
        minimum=Decimal("100000"),
        currency="CNY",
        first_response_hours=hours,
        renewal_notice_days=30,
    )


def created(
    hours: int | None,
    starts_on: date = date(2026, 10, 1),
    ends_on: date = date(2027, 9, 30),
    customer: str = "c1",
) -> CloudEvent[Any]:
    data = relations_v1.AgreementCreated(
        agreement_id="a1",
        number="XY-2026-001",
        owner="u-lin",
        starts_on=starts_on,
        ends_on=ends_on,
        terms=terms(hours),
    )
    return ev(relations_v1.AGREEMENT_CREATED, customer, data)


def amended(hours: int | None) -> CloudEvent[Any]:
    data = relations_v1.AgreementAmended(
        agreement_id="a1", owner="u-lin", ends_on=date(2027, 9, 30), terms=terms(hours), by="u-b"
    )
    return ev(relations_v1.AGREEMENT_AMENDED, "c1", data)


def terminated(on: date) -> CloudEvent[Any]:
    data = relations_v1.AgreementTerminated(agreement_id="a1", terminated_on=on, by="u-b")
    return ev(relations_v1.AGREEMENT_TERMINATED, "c1", data)


def renewed(ends_on: date) -> CloudEvent[Any]:
    data = relations_v1.AgreementRenewed(
        agreement_id="a1",
        starts_on=date(2026, 10, 1),
        ends_on=ends_on,
        previous_ends_on=date(2026, 11, 1),
        by="u-b",
    )
    return ev(relations_v1.AGREEMENT_RENEWED, "c1", data)


async def first_response_target(*events: CloudEvent[Any], complaint_id: str = "k1") -> int:
    repo = repo_with_agents()
    await run(repo, *events, complaint("c1", complaint_id))
    return repo.tickets[complaint_ticket_id(complaint_id)].target("first_response", RULES)


async def test_an_agreement_customer_s_ticket_takes_the_agreement_s_first_response() -> None:
    assert await first_response_target(created(2)) == 2 * HOUR


async def test_the_agreement_s_first_response_breaches_on_its_own_clock() -> None:
    repo = repo_with_agents()
    await run(repo, created(2), complaint("c1", "k1"))
    await sla_sweep(T0 + timedelta(hours=2), repo, rules=RULES)
    assert "ticket.sla_breached" in repo.published()
    ticket = repo.tickets[complaint_ticket_id("k1")]
    assert ticket.sla["first_response"].breached
    assert not ticket.sla["resolution"].breached


async def test_an_agreement_laxer_than_the_priority_does_not_slow_the_ticket() -> None:
    assert await first_response_target(created(8)) == 4 * HOUR


async def test_an_agreement_without_a_service_level_leaves_the_priority_s() -> None:
    assert await first_response_target(created(None)) == 4 * HOUR


@pytest.mark.parametrize(
    ("starts_on", "ends_on"),
    [(date(2026, 11, 24), date(2027, 9, 30)), (date(2026, 1, 1), date(2026, 11, 22))],
    ids=["not yet started", "ended"],
)
async def test_an_agreement_not_active_on_the_day_the_ticket_opens_does_not_count(
    starts_on: date, ends_on: date
) -> None:
    assert await first_response_target(created(2, starts_on, ends_on)) == 4 * HOUR


async def test_another_customer_s_agreement_does_not_count() -> None:
    assert await first_response_target(created(2, customer="c2")) == 4 * HOUR


async def test_a_terminated_agreement_no_longer_counts() -> None:
    assert await first_response_target(created(2), terminated(date(2026, 11, 20))) == 4 * HOUR


async def test_an_amendment_sets_the_level_for_tickets_opened_after_it() -> None:
    repo = repo_with_agents()
    await run(repo, created(2), complaint("c1", "k1"))
    await run(repo, amended(1), complaint("c1", "k2"))
    before, after = (repo.tickets[complaint_ticket_id(k)] for k in ("k1", "k2"))
    assert before.target("first_response", RULES) == 2 * HOUR  # what it promised when it opened
    assert after.target("first_response", RULES) == 1 * HOUR


async def test_a_renewal_keeps_the_level_past_the_old_end() -> None:
    events = (created(2, ends_on=date(2026, 11, 1)), renewed(date(2027, 10, 31)))
    assert await first_response_target(*events) == 2 * HOUR


async def test_a_ticket_entered_by_staff_takes_the_agreement_s_first_response() -> None:
    repo = repo_with_agents()
    await run(repo, created(1))
    done = await commands.open_ticket(intake(), repo, Clock(), RULES)
    assert done.ticket.target("first_response", RULES) == 1 * HOUR


async def test_the_stored_ticket_and_agreement_keep_the_level() -> None:
    repo = repo_with_agents()
    await run(repo, created(2), complaint("c1", "k1"))
    ticket = repo.tickets[complaint_ticket_id("k1")]
    back = from_document(to_document(ticket, ticket.figures(T0, RULES), NO_KEY), NO_KEY)
    assert back.agreement_first_response_s == 2 * HOUR
    agreement = repo.agreement_slas["a1"]
    assert agreement_from_document(agreement_document(agreement)) == agreement
