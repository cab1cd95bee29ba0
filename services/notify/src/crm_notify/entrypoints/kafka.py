"""Notify's Kafka subscriber: members, tickets, loyalty, archive and relations events that ask for
messages."""

from collections.abc import Callable, Sequence
from typing import Any

from crm_contracts import CloudEvent
from crm_notify import handlers
from crm_notify.domain.policy import NotifyRules
from crm_notify.ports import NotifyRepository, Staff
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock


def subscribe(
    runtime: Runtime,
    repository: NotifyRepository,
    rules: NotifyRules,
    clock: Clock,
    staff: Staff,
    send_now: Callable[[Sequence[str]], None],
) -> None:
    """`send_now(ids)`: hand the notifications a batch decided are due now to the delivery
    worker, once the batch is saved (not at the next sweep)."""

    async def handle(events: Sequence[CloudEvent[Any]]) -> int:
        applied = await handlers.apply_events(
            events, repository, rules=rules, staff=staff, now=clock()
        )
        if applied.due:
            send_now(applied.due)  # committed: apply_events has saved the batch
        return applied.events

    runtime.consume(
        handle,
        accepted_types=handlers.CONSUMED_TYPES,
        description="Registrations, tickets, points, churn risk, and relations' task digests, "
        "escalations and agreement alerts that call for a message.",
    )
