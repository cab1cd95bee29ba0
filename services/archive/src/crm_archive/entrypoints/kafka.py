"""The archive's Kafka subscriber: one batch subscriber over the topics it consumes."""

from functools import partial

from crm_archive import handlers
from crm_archive.domain.rules import ArchiveRules
from crm_archive.ports import CustomerRepository
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock


def subscribe(
    runtime: Runtime, repository: CustomerRepository, rules: ArchiveRules, clock: Clock
) -> None:
    """Each batch: `handlers.apply_events(events, repository, rules=, clock=)`."""
    apply = partial(handlers.apply_events, repository=repository, rules=rules, clock=clock)
    runtime.consume(
        apply,
        accepted_types=handlers.CONSUMED_TYPES,
        description="Members, orders, call-center events, ticket and loyalty-tier changes.",
    )
