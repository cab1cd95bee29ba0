"""Notify's Kafka subscriber: members, tickets, loyalty and archive events that ask for messages."""

from collections.abc import Sequence
from typing import Any

from crm_contracts import CloudEvent
from crm_notify import handlers
from crm_notify.domain.policy import NotifyRules
from crm_notify.ports import NotifyRepository, Staff
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock


def subscribe(
    runtime: Runtime, repository: NotifyRepository, rules: NotifyRules, clock: Clock, staff: Staff
) -> None:
    async def handle(events: Sequence[CloudEvent[Any]]) -> int:
        applied = await handlers.apply_events(
            events, repository, rules=rules, staff=staff, now=clock()
        )
        if applied:
            runtime.sweeps.wake("deliver")  # send now what is due, not at the next interval
        return applied

    runtime.consume(
        handle,
        accepted_types=handlers.CONSUMED_TYPES,
        description="Registrations, tickets, points and churn risk that call for a message.",
    )
