"""The owners' morning digest (`tasks.digest_due`) and the escalation notice, on the in-memory
fakes: one digest per owner per business day listing their due and overdue tasks, none before
`digest_at`, none on a weekend, none for the queue; the escalated `task.overdue` once per task."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from relations_events import churn_risk, csat, placed, registered
from relations_fakes import InMemoryRelations

from crm_contracts.relations import v1
from crm_relations import handlers
from crm_relations.domain.rules import RelationsRules

pytestmark = pytest.mark.unit
CST = ZoneInfo("Asia/Shanghai")
RULES = RelationsRules()


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2027, 1, day, hour, minute, tzinfo=CST)


async def apply(repository: InMemoryRelations, *events: object) -> None:
    await handlers.apply_events(list(events), repository, rules=RULES, clock=lambda: at(4, 10))  # type: ignore[arg-type]


async def two_tasks_for_li_wei(repository: InMemoryRelations) -> None:
    """A recovery call due Wed 6 Jan and a callback due Tue 5 Jan, both for li.wei; a callback
    for a customer without an owner (the queue)."""
    await apply(
        repository,
        registered("C-1", at(4, 9), owner="li.wei"),
        registered("C-2", at(4, 9), owner="li.wei"),
        churn_risk("C-1", at(4, 10)),  # Monday: recovery due Wednesday 6 Jan 18:00
        csat("C-2", at(4, 10), 1),  # a callback due Tuesday 5 Jan 18:00
        csat("C-3", at(4, 10), 1),  # no owner: the queue's
    )


async def test_an_owner_with_two_due_tasks_gets_one_digest_listing_both() -> None:
    repository = InMemoryRelations()
    await two_tasks_for_li_wei(repository)
    assert await handlers.digest_sweep(at(6, 8, 45), repository, rules=RULES) == 1
    [digest] = repository.published(v1.TASKS_DIGEST_DUE)
    assert digest.subject == "li.wei", "keyed by the owner, not a customer"
    data: v1.TasksDigestDue = digest.data
    assert (data.owner, data.day, data.due_today, data.overdue) == (
        "li.wei",
        date(2027, 1, 6),
        1,
        1,
    )
    assert [(t.customer_id, t.kind, t.overdue) for t in data.tasks] == [
        ("C-2", "callback", True),
        ("C-1", "recovery", False),
    ]
    # Tuesday's close passed, Wednesday's not yet: overdue, 0 business days late (the calendar's
    # count of closes missed); the digest shows the due date.
    assert data.tasks[0].business_days_overdue == 0


async def test_the_digest_is_given_once_a_day_however_often_the_sweep_runs() -> None:
    repository = InMemoryRelations()
    await two_tasks_for_li_wei(repository)
    assert await handlers.digest_sweep(at(6, 8, 45), repository, rules=RULES) == 1
    assert await handlers.digest_sweep(at(6, 9, 0), repository, rules=RULES) == 0
    assert await handlers.digest_sweep(at(6, 17, 0), repository, rules=RULES) == 0
    assert await handlers.digest_sweep(at(7, 8, 30), repository, rules=RULES) == 1  # Thursday
    days = [e.data.day for e in repository.published(v1.TASKS_DIGEST_DUE)]
    assert days == [date(2027, 1, 6), date(2027, 1, 7)]
    ids = [e.id for e in repository.published(v1.TASKS_DIGEST_DUE)]
    assert len(set(ids)) == 2, "each day's digest has its own id, derived from owner and day"


async def test_no_digest_before_the_morning_hour_on_weekends_or_for_the_queue() -> None:
    repository = InMemoryRelations()
    await two_tasks_for_li_wei(repository)
    assert await handlers.digest_sweep(at(5, 8, 0), repository, rules=RULES) == 0  # before 08:30
    assert await handlers.digest_sweep(at(9, 10, 0), repository, rules=RULES) == 0  # Saturday
    assert await handlers.digest_sweep(at(5, 8, 30), repository, rules=RULES) == 1
    owners = {e.data.owner for e in repository.published(v1.TASKS_DIGEST_DUE)}
    assert owners == {"li.wei"}, "the queue (no owner) has no digest"


async def test_a_task_due_later_is_not_in_todays_digest() -> None:
    repository = InMemoryRelations()
    await two_tasks_for_li_wei(repository)
    await handlers.digest_sweep(at(5, 9, 0), repository, rules=RULES)  # Tuesday
    [digest] = repository.published(v1.TASKS_DIGEST_DUE)
    assert [t.kind for t in digest.data.tasks] == ["callback"]  # the recovery is due Wednesday
    assert (digest.data.due_today, digest.data.overdue) == (1, 0)


async def test_the_escalated_overdue_notice_is_marked_once_per_task() -> None:
    repository = InMemoryRelations()
    await apply(repository, csat("C-1", at(4, 10), 1))  # due Tuesday 5 January, 18:00
    for day in (6, 7, 12, 13, 20):
        await handlers.overdue_sweep(at(day, 18), repository, rules=RULES)
    notices = [
        (e.data.business_days_overdue, e.data.escalated)
        for e in repository.published()
        if e.type == v1.TASK_OVERDUE
    ]
    assert notices == [(1, False), (5, True)]


async def test_the_agreement_events_name_the_owner_to_notify() -> None:
    from test_relations_agreements import agreement  # the agreement fixture

    repository = InMemoryRelations()
    await agreement(repository)
    await apply(repository, placed("C-1", "O-1", "30000", datetime(2027, 1, 20, 12, tzinfo=CST)))
    await handlers.agreement_sweep(datetime(2027, 2, 16, 12, tzinfo=CST), repository, rules=RULES)
    await handlers.agreement_sweep(datetime(2027, 4, 1, 12, tzinfo=CST), repository, rules=RULES)
    [risk] = repository.published(v1.AGREEMENT_FULFILMENT_AT_RISK)
    [closed] = repository.published(v1.AGREEMENT_PERIOD_CLOSED)
    assert (risk.data.owner, closed.data.owner) == ("li.wei", "li.wei")


async def test_a_digest_given_after_the_close_counts_the_days_tasks_overdue() -> None:
    repository = InMemoryRelations()
    await two_tasks_for_li_wei(repository)
    await handlers.digest_sweep(at(5, 19, 0), repository, rules=RULES)  # Tuesday after 18:00
    [digest] = repository.published(v1.TASKS_DIGEST_DUE)
    assert (digest.data.due_today, digest.data.overdue) == (0, 1)
    assert [t.overdue for t in digest.data.tasks] == [True]
