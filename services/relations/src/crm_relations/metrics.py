"""Relations' business metrics: tasks created, completed (on time or late), overdue; agreement
periods closed (met or missed), fulfilment at risk; open tasks by status (from the database)."""

from typing import Any

from prometheus_client import Counter, Gauge

from crm_contracts import CloudEvent
from crm_contracts.relations import v1
from crm_relations.adapters.mongo import MongoRelationsRepository
from crm_relations.domain.task import KINDS
from crm_runtime.metrics import event_field
from crm_runtime.runtime import Runtime


def install(runtime: Runtime, repository: MongoRelationsRepository) -> None:
    service = runtime.service
    registry = runtime.registry
    created = Counter(
        "crm_tasks_created", "Tasks made, by kind.", ["service", "kind"], registry=registry
    )
    completed = Counter(
        "crm_tasks_completed",
        "Tasks done, by whether on time.",
        ["service", "on_time"],
        registry=registry,
    )
    overdue = Counter(
        "crm_tasks_overdue",
        "Overdue notices given (first and escalation).",
        ["service"],
        registry=registry,
    )
    periods = Counter(
        "crm_agreement_periods_closed",
        "Agreement periods closed, by whether the minimum was met.",
        ["service", "met"],
        registry=registry,
    )
    at_risk = Counter(
        "crm_agreement_fulfilment_at_risk",
        "Agreement periods judged at risk.",
        ["service"],
        registry=registry,
    )
    open_tasks = Gauge(
        "crm_tasks_open",
        "Open tasks, by status (open, overdue), from the database.",
        ["service", "status"],
        registry=registry,
    )
    for kind in KINDS:
        created.labels(service, kind)
    for answer in ("true", "false"):
        completed.labels(service, answer)
        periods.labels(service, answer)
    overdue.labels(service)
    at_risk.labels(service)
    for status in ("open", "overdue"):
        open_tasks.labels(service, status)

    def yes_no(event: CloudEvent[Any], name: str) -> str:
        return "true" if event_field(event, name, False) else "false"

    async def refresh() -> None:
        counts = await repository.open_task_counts()
        for status in ("open", "overdue"):
            open_tasks.labels(service, status).set(counts.get(status, 0))

    runtime.gauges("tasks", refresh)
    runtime.on_committed(
        v1.TASK_CREATED,
        lambda e: created.labels(service, str(event_field(e, "kind", "follow_up"))).inc(),
    )
    runtime.on_committed(
        v1.TASK_COMPLETED, lambda e: completed.labels(service, yes_no(e, "on_time")).inc()
    )
    runtime.on_committed(v1.TASK_OVERDUE, lambda e: overdue.labels(service).inc())
    runtime.on_committed(
        v1.AGREEMENT_PERIOD_CLOSED, lambda e: periods.labels(service, yes_no(e, "met")).inc()
    )
    runtime.on_committed(v1.AGREEMENT_FULFILMENT_AT_RISK, lambda e: at_risk.labels(service).inc())
