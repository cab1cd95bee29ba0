"""What staff ask of the archive over HTTP: set a customer's account owner (责任人) or tags.
Plain functions over the `CustomerRepository` port (`patch_customer(command, repository, clock,
rules)`): unit tests run them on the in-memory fakes.

A write that lost a race to the consumer (the record changed between read and write) is redone
on a fresh read (`retry_on_conflict`), so neither the event nor the staff change is lost.
"""

import uuid
from dataclasses import dataclass

from crm_archive.domain.customer import Customer, NoCustomerError
from crm_archive.domain.rules import ArchiveRules
from crm_archive.handlers import to_messages
from crm_archive.ports import Changes, CustomerRepository, TimelineEntry
from crm_runtime.errors import retry_on_conflict
from crm_runtime.sweeps import Clock


@dataclass(frozen=True)
class PatchCustomer:
    customer_id: str
    changes: dict[str, object]
    """The fields to set, by name: `account_owner` (None: no owner) and/or `tags`."""
    by: str
    """Who asked (the user id), kept on the timeline."""


async def patch_customer(
    command: PatchCustomer, repository: CustomerRepository, clock: Clock, rules: ArchiveRules
) -> Customer:
    """Set the fields, re-derive the record, write a `customer.patched` timeline entry (field
    names and who, no values) and publish what changed (`customer.updated`); the record as
    saved. `NoCustomerError` when there is no such customer."""

    async def attempt() -> Customer:
        customer = await repository.get(command.customer_id)
        if customer is None:
            raise NoCustomerError(command.customer_id)
        now = clock()
        customer.update_profile(now, dict(command.changes))
        events = customer.evaluate(now, rules)
        action_id = f"patch-{uuid.uuid4()}"
        entry = TimelineEntry(
            action_id,
            customer.id,
            now,
            "customer.patched",
            {"fields": sorted(command.changes), "by": command.by},
        )
        outbound = to_messages(customer, events, action_id, now)
        await repository.save(Changes([customer], [entry], outbound=outbound))
        return customer

    return await retry_on_conflict(attempt)
