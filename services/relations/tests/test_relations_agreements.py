"""Agreement customers (协议客户) on the in-memory fakes: fulfilment net of refunds and
cancellations in the period each order falls in, across period boundaries; the projection; at
risk, period closed (met or missed) and renewal due, each once and each with a task."""

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from relations_events import cancelled, graded, placed, refunded, registered
from relations_fakes import InMemoryRelations

from crm_contracts import event_key
from crm_contracts.relations import v1
from crm_relations import commands, handlers
from crm_relations.domain.agreement import Agreement, AgreementError, Terms, period_bounds
from crm_relations.domain.rules import RelationsRules

pytestmark = pytest.mark.unit
CST = ZoneInfo("Asia/Shanghai")
RULES = RelationsRules()
QUARTERLY = Terms(
    period="quarter",
    measure="spend",
    minimum=Decimal(100_000),
    currency="CNY",
    renewal_notice_days=30,
    first_response_hours=4,
    price_note="九折 (10% off list)",
)


def at(month: int, day: int, hour: int = 12, year: int = 2027) -> datetime:
    return datetime(year, month, day, hour, 0, tzinfo=CST)


async def agreement(repository: InMemoryRelations, terms: Terms = QUARTERLY) -> Agreement:
    command = commands.CreateAgreement(
        "C-1", "XY-2027-001", "li.wei", date(2027, 1, 1), date(2027, 12, 31), terms, "k1"
    )
    return await commands.create_agreement(command, "boss", repository, lambda: at(1, 1, 9))


async def apply(repository: InMemoryRelations, *events: object) -> None:
    await handlers.apply_events(list(events), repository, rules=RULES, clock=lambda: at(1, 1))  # type: ignore[arg-type]


def stored(repository: InMemoryRelations, a: Agreement) -> Agreement:
    return repository.agreements_[a.agreement_id]


def test_periods_are_calendar_months_and_quarters() -> None:
    assert period_bounds(date(2027, 2, 15), "quarter") == (date(2027, 1, 1), date(2027, 3, 31))
    assert period_bounds(date(2027, 12, 31), "quarter") == (date(2027, 10, 1), date(2027, 12, 31))
    assert period_bounds(date(2028, 2, 10), "month") == (date(2028, 2, 1), date(2028, 2, 29))


async def test_fulfilment_is_net_of_refunds_and_cancellations_in_the_period_of_the_order() -> None:
    repository = InMemoryRelations()
    a = await agreement(repository)
    await apply(
        repository,
        placed("C-1", "O-1", "40000", at(3, 30)),
        placed("C-1", "O-2", "10000", at(3, 31, 23)),  # 23:00 in Shanghai: still Q1
        placed("C-1", "O-3", "5000", at(4, 1, 1)),
        placed("C-1", "O-4", "999", at(3, 2), currency="USD"),  # another currency: not spend
    )
    # A refund and a cancellation in Q2 of orders placed in Q1 take them back from Q1.
    await apply(
        repository,
        refunded("C-1", "O-1", "15000", at(4, 3)),
        cancelled("C-1", "O-2", at(4, 4)),
        refunded("C-1", "O-3", "5000", at(4, 5)),  # all of O-3: it no longer counts as an order
    )
    q1, q2 = stored(repository, a).periods
    assert (q1.start, q1.spend, q1.orders) == (date(2027, 1, 1), Decimal(25_000), 2)
    assert (q2.start, q2.spend, q2.orders) == (date(2027, 4, 1), Decimal(0), 0)


async def test_an_order_counts_once_however_often_it_arrives_and_refunds_never_exceed_it() -> None:
    repository = InMemoryRelations()
    a = await agreement(repository)
    await apply(repository, placed("C-1", "O-1", "1000", at(2, 1)))
    await apply(repository, placed("C-1", "O-1", "1000", at(2, 1)))  # resent under a new id
    await apply(repository, refunded("C-1", "O-1", "800", at(2, 2)))
    await apply(repository, refunded("C-1", "O-1", "800", at(2, 3)))
    await apply(repository, cancelled("C-1", "O-1", at(2, 4)))
    [q1] = stored(repository, a).periods
    assert (q1.spend, q1.orders) == (Decimal(0), 0)


async def test_placed_and_cancelled_orders_get_no_inbox_mark_and_count_once_when_redelivered() -> (
    None
):
    """The line (the agreement and the order) is what counts an order once, so the inbox keeps
    no mark for a placed or cancelled order (ADR 0025); a refund takes its amount off each time
    it is applied, so it is marked. The same events delivered again change nothing."""
    repository = InMemoryRelations()
    a = await agreement(repository)
    events = [
        placed("C-1", "O-1", "1000", at(2, 1)),
        placed("C-1", "O-2", "3000", at(2, 1)),
        placed("C-2", "O-9", "5000", at(2, 1)),  # no agreement: nothing to count
        refunded("C-1", "O-1", "400", at(2, 2)),
        cancelled("C-1", "O-2", at(2, 3)),
    ]
    await apply(repository, *events)
    assert repository.processed == {event_key(events[3])}
    figures = stored(repository, a).periods
    assert [(q.spend, q.orders) for q in figures] == [(Decimal(600), 1)]
    await apply(repository, *events)
    for e in events:
        await apply(repository, e)
    assert stored(repository, a).periods == figures


async def test_orders_before_the_agreement_or_of_others_are_not_counted() -> None:
    repository = InMemoryRelations()
    await apply(repository, placed("C-1", "O-0", "5000", at(12, 30, year=2026)))
    a = await agreement(repository)
    await apply(
        repository,
        refunded("C-1", "O-0", "5000", at(1, 5)),
        placed("C-2", "O-9", "5000", at(1, 5)),
    )
    assert stored(repository, a).periods == []


async def test_orders_neither_read_nor_write_customer_records_or_tasks() -> None:
    """An order touches only its customer's agreements: relations does not load and rewrite
    the record (and the follow-up tasks) of every buyer in a batch of orders."""
    repository = InMemoryRelations()
    a = await agreement(repository)
    await apply(repository, registered("C-1", at(1, 2), "li.wei"), graded("C-2", at(1, 2), "vip"))
    before = {c: repository.customers_[c].version for c in ("C-1", "C-2")}
    repository.customer_reads.clear()
    await apply(
        repository,
        placed("C-1", "O-1", "1000", at(2, 1)),
        placed("C-2", "O-2", "2000", at(2, 1)),
        refunded("C-1", "O-1", "300", at(2, 2)),
    )
    assert repository.customer_reads == []
    assert {c: repository.customers_[c].version for c in before} == before
    [q1] = stored(repository, a).periods
    assert (q1.spend, q1.orders) == (Decimal(700), 1)
    # A batch that mixes orders with a customer's news reads and writes only that customer.
    await apply(repository, placed("C-2", "O-3", "500", at(2, 3)), graded("C-1", at(2, 3), "vip"))
    assert repository.customer_reads == [["C-1"]]
    assert repository.customers_["C-1"].version == before["C-1"] + 1
    assert repository.customers_["C-2"].version == before["C-2"]


async def test_the_projection_extrapolates_what_was_ordered_so_far_to_the_period_end() -> None:
    repository = InMemoryRelations()
    a = await agreement(repository)
    await apply(repository, placed("C-1", "O-1", "30000", at(1, 20)))
    q1 = stored(repository, a).periods[0]
    mid = datetime(2027, 2, 15, 0, 0, tzinfo=CST)  # 45 of the quarter's 90 days
    fulfilled, projected, left = stored(repository, a).projection(q1, mid, CST)
    assert (fulfilled, projected, left) == (Decimal(30_000), Decimal("60000.00"), 0.5)


async def test_30000_by_mid_quarter_is_at_risk_once_then_100000_closes_the_quarter_met() -> None:
    repository = InMemoryRelations()
    a = await agreement(repository)
    await apply(repository, placed("C-1", "O-1", "30000", at(1, 20)))
    assert await handlers.agreement_sweep(at(2, 1), repository, rules=RULES) == 0  # too early
    assert await handlers.agreement_sweep(at(2, 16), repository, rules=RULES) == 1
    assert await handlers.agreement_sweep(at(2, 17), repository, rules=RULES) == 0
    [risk] = repository.published(v1.AGREEMENT_FULFILMENT_AT_RISK)
    assert (risk.data.fulfilled, risk.data.minimum) == (Decimal(30_000), Decimal(100_000))
    assert risk.data.projected < Decimal(100_000)
    review = [t for t in repository.open_of("C-1") if t.kind == "agreement_review"]
    assert [(t.owner, t.agreement_id) for t in review] == [("li.wei", a.agreement_id)]

    await apply(repository, placed("C-1", "O-2", "70000", at(3, 20)))
    await handlers.agreement_sweep(at(4, 1, 0), repository, rules=RULES)
    [closed] = repository.published(v1.AGREEMENT_PERIOD_CLOSED)
    assert (closed.data.period_start, closed.data.met) == (date(2027, 1, 1), True)
    assert closed.data.fulfilled == Decimal(100_000)


async def test_a_quarter_without_orders_closes_missed() -> None:
    repository = InMemoryRelations()
    await agreement(repository)
    await handlers.agreement_sweep(at(7, 2), repository, rules=RULES)
    closed = repository.published(v1.AGREEMENT_PERIOD_CLOSED)
    assert [(e.data.period_start, e.data.met) for e in closed] == [
        (date(2027, 1, 1), False),
        (date(2027, 4, 1), False),
    ]


async def test_renewal_is_due_the_notice_period_before_the_end_once_and_again_after_renewal() -> (
    None
):
    repository = InMemoryRelations()
    a = await agreement(repository)
    await handlers.agreement_sweep(at(11, 30), repository, rules=RULES)
    assert repository.published(v1.AGREEMENT_RENEWAL_DUE) == []
    await handlers.agreement_sweep(at(12, 1), repository, rules=RULES)  # 31 December - 30 days
    await handlers.agreement_sweep(at(12, 2), repository, rules=RULES)
    [due] = repository.published(v1.AGREEMENT_RENEWAL_DUE)
    assert (due.data.ends_on, due.data.owner) == (date(2027, 12, 31), "li.wei")
    renewal = [t for t in repository.open_of("C-1") if t.kind == "renewal"]
    assert [t.owner for t in renewal] == ["li.wei"]
    await commands.renew_agreement(
        a.agreement_id, date(2028, 12, 31), "boss", repository, lambda: at(12, 3)
    )
    await handlers.agreement_sweep(at(12, 1, year=2028), repository, rules=RULES)
    assert len(repository.published(v1.AGREEMENT_RENEWAL_DUE)) == 2


async def test_the_agreement_events_carry_the_sla_and_never_the_price_note() -> None:
    repository = InMemoryRelations()
    await agreement(repository)
    [created] = repository.published(v1.AGREEMENT_CREATED)
    assert created.data.terms.first_response_hours == 4
    assert "九折" not in created.model_dump_json()


async def test_an_agreement_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(AgreementError):
        Agreement(
            "A", "C-1", "N", None, date(2027, 2, 1), date(2027, 1, 1), QUARTERLY, at(1, 1), "x"
        )


async def test_a_terminated_agreement_counts_no_more_orders() -> None:
    repository = InMemoryRelations()
    a = await agreement(repository)
    await commands.terminate_agreement(
        a.agreement_id, date(2027, 1, 31), "boss", repository, lambda: at(1, 31)
    )
    await apply(repository, placed("C-1", "O-1", "1000", at(2, 2)))
    assert stored(repository, a).periods == []
    assert stored(repository, a).status == "terminated"
