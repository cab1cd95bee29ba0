"""Maintenance plans (定期回访) and the tasks events make, run on the in-memory fakes: cadence by
grade, rescheduling on grade, stage, owner changes and contacts, recovery calls for churn
warnings, callbacks for low CSAT, business-day due dates, redeliveries that change nothing."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from relations_events import churn_risk, created, csat, graded, owner_changed, registered
from relations_fakes import InMemoryRelations

from crm_contracts.relations import v1
from crm_relations import commands, handlers
from crm_relations.domain.rules import Plan, RelationsRules
from crm_runtime.calendar import BusinessCalendar

pytestmark = pytest.mark.unit
CST = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2027, 1, 4, 10, 0, tzinfo=CST)
RULES = RelationsRules()


def close_of(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 18, 0, tzinfo=CST)


async def apply(
    repository: InMemoryRelations, *events: object, rules: RelationsRules = RULES
) -> int:
    return await handlers.apply_events(list(events), repository, rules=rules, clock=lambda: MONDAY)  # type: ignore[arg-type]


async def test_a_vip_customer_gets_a_follow_up_for_their_owner_due_in_30_days() -> None:
    repository = InMemoryRelations()
    await apply(
        repository,
        registered("C-1", MONDAY, owner="li.wei"),
        created("C-1", MONDAY),
        graded("C-1", MONDAY, "vip"),
    )
    [task] = repository.open_of("C-1")
    assert (task.kind, task.owner, task.reason) == ("follow_up", "li.wei", "plan")
    assert task.due_at == close_of(2027, 2, 3)  # 4 January + 30 days, a Wednesday
    [announced] = repository.published(v1.TASK_CREATED)
    assert announced.data.owner == "li.wei"


async def test_an_ordinary_customer_is_followed_up_every_90_days_and_potential_ones_every_14() -> (
    None
):
    repository = InMemoryRelations()
    await apply(repository, created("C-1", MONDAY), graded("C-1", MONDAY, "ordinary"))
    await apply(repository, created("C-2", MONDAY), graded("C-2", MONDAY, "potential"))
    assert repository.open_of("C-1")[0].due_at == close_of(2027, 4, 5)  # 4 April: a Sunday
    assert repository.open_of("C-2")[0].due_at == close_of(2027, 1, 18)


async def test_a_grade_change_moves_the_same_task_rather_than_making_a_second() -> None:
    repository = InMemoryRelations()
    await apply(repository, created("C-1", MONDAY), graded("C-1", MONDAY, "ordinary"))
    [before] = repository.open_of("C-1")
    await apply(repository, graded("C-1", MONDAY + timedelta(days=1), "vip"))
    [after] = repository.open_of("C-1")
    assert after.task_id == before.task_id
    assert after.due_at == close_of(2027, 2, 3)
    assert [e.data.due_at for e in repository.published(v1.TASK_RESCHEDULED)] == [after.due_at]


async def test_an_owner_change_hands_the_planned_follow_up_to_the_new_owner() -> None:
    repository = InMemoryRelations()
    await apply(repository, registered("C-1", MONDAY), graded("C-1", MONDAY, "vip"))
    assert repository.open_of("C-1")[0].owner is None  # the queue
    await apply(repository, owner_changed("C-1", MONDAY + timedelta(hours=1), "wang.fang"))
    [task] = repository.open_of("C-1")
    assert task.owner == "wang.fang"
    assert repository.published(v1.TASK_RESCHEDULED)[-1].data.owner == "wang.fang"


async def test_a_potential_customer_after_their_first_60_days_has_no_plan_and_the_task_goes() -> (
    None
):
    repository = InMemoryRelations()
    await apply(repository, created("C-1", MONDAY), graded("C-1", MONDAY, "potential"))
    await apply(
        repository, created("C-1", MONDAY), graded("C-1", MONDAY + timedelta(days=61), "potential")
    )
    assert repository.open_of("C-1") == []
    [cancelled] = repository.published(v1.TASK_CANCELLED)
    assert cancelled.data.reason == "superseded"


async def test_a_redelivered_batch_makes_nothing_twice() -> None:
    repository = InMemoryRelations()
    events = [created("C-1", MONDAY), graded("C-1", MONDAY, "vip"), churn_risk("C-1", MONDAY)]
    assert await apply(repository, *events) == 3
    outbox = list(repository.outbox)
    assert await apply(repository, *events) == 0
    assert repository.outbox == outbox
    assert len(repository.open_of("C-1")) == 2


async def test_a_churn_warning_makes_a_recovery_call_due_within_two_business_days() -> None:
    repository = InMemoryRelations()
    friday = datetime(2027, 1, 8, 10, 0, tzinfo=CST)
    await apply(repository, registered("C-1", MONDAY, owner="li.wei"), churn_risk("C-1", friday))
    [recovery] = [t for t in repository.open_of("C-1") if t.kind == "recovery"]
    assert recovery.owner == "li.wei"
    assert recovery.due_at == close_of(2027, 1, 12)  # Monday and Tuesday are the two days
    await apply(repository, churn_risk("C-1", friday + timedelta(hours=1)))
    assert len([t for t in repository.open_of("C-1") if t.kind == "recovery"]) == 1


async def test_due_dates_skip_holidays_and_count_make_up_working_days() -> None:
    calendar = BusinessCalendar(
        holidays=frozenset({datetime(2027, 1, 11).date()}),
        extra_working_days=frozenset({datetime(2027, 1, 9).date()}),  # a Saturday (调休)
    )
    rules = RelationsRules(calendar=calendar)
    repository = InMemoryRelations()
    friday = datetime(2027, 1, 8, 10, 0, tzinfo=CST)
    await apply(repository, churn_risk("C-1", friday), rules=rules)
    [recovery] = repository.open_of("C-1")
    assert recovery.due_at == close_of(2027, 1, 12)  # Saturday (worked), Monday off, Tuesday


async def test_a_low_csat_makes_a_callback_and_a_good_one_does_not() -> None:
    repository = InMemoryRelations()
    await apply(repository, csat("C-1", MONDAY, 2), csat("C-2", MONDAY, 4))
    [callback] = repository.open_of("C-1")
    assert (callback.kind, callback.due_at) == ("callback", close_of(2027, 1, 5))
    assert repository.open_of("C-2") == []


async def test_completing_a_follow_up_schedules_the_next_from_the_contact() -> None:
    repository = InMemoryRelations()
    await apply(repository, registered("C-1", MONDAY, owner="li.wei"), graded("C-1", MONDAY, "vip"))
    [first] = repository.open_of("C-1")
    done_at = datetime(2027, 2, 1, 15, 0, tzinfo=CST)
    actor = commands.Actor("li.wei", supervisor=False)
    command = commands.CompleteTask(first.task_id, "reached", "谈了续约", None)
    await commands.complete_task(command, actor, repository, lambda: done_at, RULES)
    [nxt] = repository.open_of("C-1")
    assert nxt.due_at == close_of(2027, 3, 3)  # 1 February + 30 days
    [completed] = repository.published(v1.TASK_COMPLETED)
    assert (completed.data.by, completed.data.on_time) == ("li.wei", True)
    assert "谈了续约" not in completed.model_dump_json()
    assert repository.tasks_[first.task_id].summary == "谈了续约"


async def test_completing_with_a_chosen_date_schedules_the_next_follow_up_on_it() -> None:
    repository = InMemoryRelations()
    await apply(repository, registered("C-1", MONDAY, owner="li.wei"), graded("C-1", MONDAY, "vip"))
    [first] = repository.open_of("C-1")
    chosen = datetime(2027, 1, 16).date()  # a Saturday: due the Monday after
    command = commands.CompleteTask(first.task_id, "reached", None, chosen)
    actor = commands.Actor("li.wei", supervisor=False)
    await commands.complete_task(command, actor, repository, lambda: MONDAY, RULES)
    [nxt] = repository.open_of("C-1")
    assert (nxt.due_at, nxt.reason) == (close_of(2027, 1, 18), "next_follow_up")


async def test_an_agent_cannot_complete_someone_elses_task_but_a_supervisor_can() -> None:
    repository = InMemoryRelations()
    await apply(repository, registered("C-1", MONDAY, owner="li.wei"), graded("C-1", MONDAY, "vip"))
    [task] = repository.open_of("C-1")
    command = commands.CompleteTask(task.task_id, "reached", None, None)
    with pytest.raises(commands.NotYoursError):
        await commands.complete_task(
            command, commands.Actor("zhao.lei", False), repository, lambda: MONDAY, RULES
        )
    await commands.complete_task(
        command, commands.Actor("boss", True), repository, lambda: MONDAY, RULES
    )
    assert repository.tasks_[task.task_id].completed_by == "boss"


async def test_the_overdue_sweep_announces_once_then_once_more_after_five_business_days() -> None:
    repository = InMemoryRelations()
    await apply(repository, csat("C-1", MONDAY, 1))  # due Tuesday 5 January, 18:00
    assert await handlers.overdue_sweep(close_of(2027, 1, 6), repository, rules=RULES) == 1
    assert await handlers.overdue_sweep(close_of(2027, 1, 7), repository, rules=RULES) == 0
    assert await handlers.overdue_sweep(close_of(2027, 1, 12), repository, rules=RULES) == 1
    assert await handlers.overdue_sweep(close_of(2027, 1, 20), repository, rules=RULES) == 0
    days = [e.data.business_days_overdue for e in repository.published(v1.TASK_OVERDUE)]
    assert days == [1, 5]
    assert repository.open_of("C-1")[0].status == "overdue"


async def test_plans_are_configuration() -> None:
    rules = RelationsRules(plans=(Plan(every_days=7, purpose="weekly", grade="vip"),))
    repository = InMemoryRelations()
    await apply(repository, created("C-1", MONDAY), graded("C-1", MONDAY, "vip"), rules=rules)
    await apply(repository, created("C-2", MONDAY), graded("C-2", MONDAY, "ordinary"), rules=rules)
    assert repository.open_of("C-1")[0].due_at == close_of(2027, 1, 11)
    assert repository.open_of("C-2") == []


async def test_one_key_makes_one_task_and_another_task_under_that_key_is_refused() -> None:
    repository = InMemoryRelations()
    actor = commands.Actor("li.wei", supervisor=False)
    command = commands.CreateTask("C-1", "callback", "li.wei", None, 1, "回电", "key-1")
    first = await commands.create_task(command, actor, repository, lambda: MONDAY, RULES)
    again = await commands.create_task(command, actor, repository, lambda: MONDAY, RULES)
    assert (again.task.task_id, again.replayed) == (first.task.task_id, True)
    assert len(repository.published(v1.TASK_CREATED)) == 1
    other = commands.CreateTask("C-2", "callback", "li.wei", None, 1, None, "key-1")
    with pytest.raises(commands.IdempotencyKeyReusedError):
        await commands.create_task(other, actor, repository, lambda: MONDAY, RULES)
    for_someone_else = commands.CreateTask("C-1", "callback", "zhao.lei", None, 1, None, "k2")
    with pytest.raises(commands.NotYoursError):
        await commands.create_task(for_someone_else, actor, repository, lambda: MONDAY, RULES)
