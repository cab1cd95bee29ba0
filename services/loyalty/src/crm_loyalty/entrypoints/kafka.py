"""Loyalty's Kafka subscriber: one batch subscriber over members and orders."""

from functools import partial

from crm_loyalty import handlers
from crm_loyalty.domain.rules import LoyaltyRules
from crm_loyalty.handlers import AccountRepository
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock


def subscribe(
    runtime: Runtime, repository: AccountRepository, rules: LoyaltyRules, clock: Clock
) -> None:
    """Each batch: `handlers.apply_events(events, repository, rules=, clock=)`."""
    apply = partial(handlers.apply_events, repository=repository, rules=rules, clock=clock)
    runtime.consume(
        apply,
        accepted_types=handlers.CONSUMED_TYPES,
        description="Orders earn and reverse points; registrations enrol (welcome bonus).",
    )
