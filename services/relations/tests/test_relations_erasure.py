"""Erasure (ADR 0006) on the in-memory fakes: the customer's open tasks are cancelled, their
summaries go, no follow-up is planned for them again, and relations confirms on privacy.v1."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from relations_events import churn_risk, csat, erasure, graded, registered
from relations_fakes import InMemoryRelations

from crm_contracts.privacy import v1 as privacy_v1
from crm_contracts.relations import v1
from crm_relations import commands, handlers
from crm_relations.domain.rules import RelationsRules

pytestmark = pytest.mark.unit
CST = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2027, 1, 4, 10, 0, tzinfo=CST)
RULES = RelationsRules()


async def test_erasure_cancels_open_tasks_drops_summaries_and_is_confirmed_once() -> None:
    repository = InMemoryRelations()
    await handlers.apply_events(
        [registered("C-1", MONDAY, owner="li.wei"), graded("C-1", MONDAY, "vip")],
        repository,
        rules=RULES,
    )
    [task] = repository.open_of("C-1")
    actor = commands.Actor("li.wei", supervisor=False)
    complete = commands.CompleteTask(task.task_id, "reached", "她说下月搬家", None)
    await commands.complete_task(complete, actor, repository, lambda: MONDAY, RULES)
    request = erasure("C-1", MONDAY + timedelta(days=1))
    await handlers.apply_events([request], repository, rules=RULES, clock=lambda: MONDAY)
    await handlers.apply_events([request], repository, rules=RULES, clock=lambda: MONDAY)
    assert repository.erased == {"C-1"}
    assert repository.open_of("C-1") == []
    assert all(t.summary is None for t in repository.tasks_.values())
    [confirmation] = repository.published(privacy_v1.CUSTOMER_ERASURE_COMPLETED)
    assert confirmation.data.service == "relations"
    assert repository.published(v1.TASK_CANCELLED)[-1].data.reason == "erased"
    await handlers.apply_events(
        [graded("C-1", MONDAY + timedelta(days=2), "ordinary")], repository, rules=RULES
    )
    assert repository.open_of("C-1") == []  # nothing planned for an erased customer


async def test_a_customer_erased_before_relations_heard_of_them_gets_no_calls_later() -> None:
    repository = InMemoryRelations()
    await handlers.apply_events([erasure("C-9", MONDAY)], repository, rules=RULES)
    later = MONDAY + timedelta(days=1)
    await handlers.apply_events(
        [churn_risk("C-9", later), csat("C-9", later, 1), graded("C-9", later, "vip")],
        repository,
        rules=RULES,
    )
    assert repository.open_of("C-9") == []
    assert repository.published(v1.TASK_CREATED) == []
