"""What staff ask of the archive over HTTP: set a customer's account owner (责任人) or tags, log
a contact they made, write an internal note. Plain functions over the `CustomerRepository` port
(`patch_customer(command, repository, clock, rules)`): unit tests run them on the in-memory
fakes.

A write that lost a race to the consumer (the record changed between read and write) is redone
on a fresh read (`retry_on_conflict`), so neither the event nor the staff change is lost.
"""

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from crm_archive.domain.customer import Customer, NoCustomerError
from crm_archive.domain.rules import ArchiveRules
from crm_archive.handlers import to_messages
from crm_archive.ports import Changes, CustomerRepository, Note, TimelineEntry
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


ContactChannel = Literal["call", "email", "visit", "meeting", "wechat", "social"]
CONTACT_LOGGED = "contact.logged"
"""The timeline type of a contact, made by staff or logged by the call center."""


def to_milliseconds(at: datetime) -> datetime:
    """The time as MongoDB keeps it: what a command answers is what a later read gives back."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


class IdempotencyKeyReusedError(ValueError):
    """An Idempotency-Key already used for a different request."""


class CustomerErasedError(ValueError):
    """The customer was erased: no personal data about them is taken in."""


@dataclass(frozen=True)
class LogContact:
    customer_id: str
    key: str
    """The caller's Idempotency-Key: with the customer id, the timeline entry's id."""
    channel: ContactChannel
    direction: Literal["in", "out"]
    purpose: str | None
    outcome: str | None
    summary: str | None
    """Free text: personal data, sealed at rest."""
    next_contact_on: date | None
    by: str
    """Who made the contact (the user id)."""

    @property
    def entry_id(self) -> str:
        return f"contact/{self.customer_id}/{self.key}"

    def data(self) -> dict[str, object]:
        """What the timeline entry shows besides the summary (no personal data)."""
        found = {
            "channel": self.channel,
            "direction": self.direction,
            "purpose": self.purpose,
            "outcome": self.outcome,
            "next_contact_on": self.next_contact_on and self.next_contact_on.isoformat(),
            "by": self.by,
        }
        return {k: v for k, v in found.items() if v is not None}


@dataclass(frozen=True)
class Logged:
    """The timeline entry a `log_contact` wrote, or found written by the first call with its
    key (`replayed`)."""

    entry: TimelineEntry
    replayed: bool


async def log_contact(
    command: LogContact, repository: CustomerRepository, clock: Clock, rules: ArchiveRules
) -> Logged:
    """A contact staff made: counted in the customer's contacts, a `contact.logged` entry on the
    timeline (`by`: who; the summary sealed), the record re-derived and what changed published.
    Idempotent by the key: the same key and request return the first entry; the same key with
    another request is an `IdempotencyKeyReusedError`. `NoCustomerError` when there is no such
    customer. After an erasure the contact counts but its summary is not kept."""

    async def attempt() -> Logged:
        customer = await repository.get(command.customer_id)
        if customer is None:
            raise NoCustomerError(command.customer_id)
        erased = customer.erased_at is not None
        first = await repository.timeline_entry(command.entry_id)
        if first is not None:
            # After an erasure the first summary cannot be read: the rest must match.
            same_summary = erased or first.summary == command.summary
            if first.data != command.data() or not same_summary:
                raise IdempotencyKeyReusedError(
                    f"Idempotency-Key {command.key!r} was used for another contact"
                )
            return Logged(first, replayed=True)
        now = to_milliseconds(clock())
        customer.log_contact(now)
        events = customer.evaluate(now, rules)
        summary = None if erased else command.summary
        entry = TimelineEntry(
            command.entry_id, customer.id, now, CONTACT_LOGGED, command.data(), summary=summary
        )
        outbound = to_messages(customer, events, command.entry_id, now)
        await repository.save(Changes([customer], [entry], outbound=outbound))
        return Logged(entry, replayed=False)

    return await retry_on_conflict(attempt)


@dataclass(frozen=True)
class AddNote:
    customer_id: str
    text: str
    """Free text: personal data, sealed at rest."""
    by: str
    """The author (the user id)."""


async def add_note(command: AddNote, repository: CustomerRepository, clock: Clock) -> Note:
    """An internal note on a customer, with its author and time. `NoCustomerError` when there
    is no such customer, `CustomerErasedError` once the customer is erased."""
    customer = await repository.get(command.customer_id)
    if customer is None:
        raise NoCustomerError(command.customer_id)
    if customer.erased_at is not None:
        raise CustomerErasedError(f"customer {command.customer_id!r} was erased")
    at = to_milliseconds(clock())
    note = Note(f"note-{uuid.uuid4()}", customer.id, at, command.by, command.text)
    # A note races an erasure harmlessly: sealed under a key the erasure destroys.
    await repository.save(Changes(notes=[note]))
    return note
