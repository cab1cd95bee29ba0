"""The archive's Kafka subscriber: one batch subscriber over the topics it consumes."""

from collections.abc import Sequence
from typing import Any

from crm_archive import handlers
from crm_archive.handlers import Clock, CustomerRepository
from crm_contracts import CloudEvent
from crm_contracts.topics import ORDERS
from crm_runtime.runtime import Runtime


def subscribe(
    runtime: Runtime, repository: CustomerRepository, clock: Clock, base_currency: str
) -> None:
    async def handle(events: Sequence[CloudEvent[Any]]) -> int:
        return await handlers.apply_events(
            events, repository, clock=clock, base_currency=base_currency
        )

    runtime.consume(
        [ORDERS.name],
        handle,
        accepted_types=handlers.CONSUMED_TYPES,
        description="Orders placed (the archive issue adds members and call-center events).",
    )
