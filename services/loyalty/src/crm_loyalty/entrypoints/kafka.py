"""Loyalty's Kafka subscriber: one batch subscriber over members and orders."""

from collections.abc import Sequence
from typing import Any

from crm_contracts import CloudEvent
from crm_loyalty import handlers
from crm_loyalty.domain.rules import LoyaltyRules
from crm_loyalty.handlers import AccountRepository
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock


def subscribe(
    runtime: Runtime, repository: AccountRepository, rules: LoyaltyRules, clock: Clock
) -> None:
    async def handle(events: Sequence[CloudEvent[Any]]) -> int:
        return await handlers.apply_events(events, repository, rules=rules, clock=clock)

    runtime.consume(
        handle,
        accepted_types=handlers.CONSUMED_TYPES,
        description="Orders earn and reverse points; registrations enrol (welcome bonus).",
    )
