"""Tickets' business metrics: open tickets by priority, SLA warnings and breaches."""

from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from crm_contracts import CloudEvent
from crm_contracts.tickets.v1 import TICKET_SLA_BREACHED, TICKET_SLA_WARNING
from crm_runtime.metrics import event_field
from crm_runtime.runtime import Runtime
from crm_tickets.adapters.mongo import MongoTicketRepository

PRIORITIES = ("P1", "P2", "P3", "P4")


def install(runtime: Runtime, repository: MongoTicketRepository) -> None:
    service = runtime.service
    open_tickets = Gauge(
        "crm_tickets_open",
        "Tickets not resolved or closed, by priority (from the database: the same on every "
        "replica).",
        ["service", "priority"],
        registry=runtime.registry,
    )
    warnings = Counter(
        "crm_sla_warnings",
        "SLA warnings (80 % of a target's time used), by priority.",
        ["service", "priority"],
        registry=runtime.registry,
    )
    breaches = Counter(
        "crm_sla_breaches",
        "SLA breaches (a target's time passed), by priority.",
        ["service", "priority"],
        registry=runtime.registry,
    )
    for priority in PRIORITIES:
        warnings.labels(service, priority)
        breaches.labels(service, priority)

    async def refresh() -> None:
        counts = await repository.open_by_priority()
        for priority in sorted({*PRIORITIES, *counts}):
            open_tickets.labels(service, priority).set(counts.get(priority, 0))

    def count(counter: Counter) -> Callable[[CloudEvent[Any]], None]:
        def increment(event: CloudEvent[Any]) -> None:
            counter.labels(service, str(event_field(event, "priority", "unknown"))).inc()

        return increment

    runtime.gauges("tickets", refresh)
    runtime.on_committed(TICKET_SLA_WARNING, count(warnings))
    runtime.on_committed(TICKET_SLA_BREACHED, count(breaches))
