"""The archive's Kafka subscriber: one batch subscriber over the topics it consumes."""

from collections.abc import Sequence
from typing import Any

from crm_archive import handlers
from crm_archive.domain.rules import ArchiveRules
from crm_archive.handlers import CustomerRepository
from crm_contracts import CloudEvent
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock


def subscribe(
    runtime: Runtime, repository: CustomerRepository, clock: Clock, rules: ArchiveRules
) -> None:
    async def handle(events: Sequence[CloudEvent[Any]]) -> int:
        return await handlers.apply_events(events, repository, clock=clock, rules=rules)

    runtime.consume(
        handle,
        accepted_types=handlers.CONSUMED_TYPES,
        description="Members, orders, call-center events, ticket and loyalty-tier changes.",
    )
