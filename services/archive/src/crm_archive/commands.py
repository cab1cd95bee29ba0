"""What staff ask of the archive over HTTP: enter a customer, edit a profile (and its tags,
consents, account owner 责任人), log a contact they made, write an internal note. Plain
functions over the `CustomerRepository` port (`patch_customer(command, repository, clock,
rules)`): unit tests run them on the in-memory fakes, and an importer can call
`create_customer` per row.

A write that lost a race to the consumer (the record changed between read and write) is redone
on a fresh read (`retry_on_conflict`), so neither the event nor the staff change is lost.

Staff-entered customers, profile edits and consent changes are announced on `members.v1`, as
the member system announces registrations, so the other services learn of them the same way.
Each such event is marked applied in the archive's inbox in the same transaction: when it comes
back to the archive's own consumer it changes nothing.
"""

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel

from crm_archive.domain.customer import Customer, NoCustomerError
from crm_archive.domain.rules import ArchiveRules
from crm_archive.handlers import SOURCE, consents_of, profile_of, to_messages
from crm_archive.ports import Changes, CustomerRepository, Note, TimelineEntry
from crm_contracts import CloudEvent, new_event
from crm_contracts.members import v1 as members_v1
from crm_contracts.topics import MEMBERS
from crm_runtime.errors import retry_on_conflict
from crm_runtime.outbox import OutboundMessage
from crm_runtime.sweeps import Clock

CUSTOMER_CREATED = "customer.created"
"""The timeline type of a customer staff entered."""
STAFF_SOURCE = "staff"
"""The `source` (where they registered) of a customer staff entered without naming one."""


class IdempotencyKeyReusedError(ValueError):
    """An Idempotency-Key already used for a different request."""


class CustomerErasedError(ValueError):
    """The customer was erased: no personal data about them is taken in."""


class StaleVersionError(ValueError):
    """The record changed since the caller read it (`If-Match` names another version)."""

    def __init__(self, customer_id: str, current: int) -> None:
        super().__init__(f"customer {customer_id!r} is at version {current}; read it again")
        self.current = current


class DuplicateCustomerError(ValueError):
    """A customer with this phone or e-mail is on file already."""

    def __init__(self, existing: list[str]) -> None:
        super().__init__(f"a customer with this phone or e-mail is on file: {', '.join(existing)}")
        self.existing = existing


def to_milliseconds(at: datetime) -> datetime:
    """The time as MongoDB keeps it: what a command answers is what a later read gives back."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def member_event(customer_id: str, data: BaseModel, cause: str, now: datetime) -> CloudEvent[Any]:
    """A `members.v1` event the archive announces (source `crm/archive`), its id derived from
    its cause: redoing the same action cannot mint another."""
    event_type = next(t for t, model in members_v1.EVENTS.items() if isinstance(data, model))
    return new_event(
        event_type,
        source=SOURCE,
        subject=customer_id,
        data=data,
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{customer_id}/{cause}/{event_type}")),
        time=now,
    )


@dataclass(frozen=True)
class CreateCustomer:
    registration: members_v1.CustomerRegistered
    """Who the customer is: the fields of a member-system registration (validated there)."""
    key: str
    """The caller's idempotency key: with who calls, it makes the customer's id."""
    by: str
    """Who entered the customer (the user id)."""
    allow_duplicate: bool = False
    """Enter them even when a customer with the same phone or e-mail is on file."""

    @property
    def customer_id(self) -> str:
        seed = f"crm/archive/customers/{len(self.by)}:{self.by}/{self.key}"
        return f"c-{uuid.uuid5(uuid.NAMESPACE_URL, seed)}"

    @property
    def entry_id(self) -> str:
        return f"create/{self.customer_id}"


@dataclass(frozen=True)
class Entered:
    """The customer a `create_customer` entered, or found entered by the first call with its
    key (`replayed`)."""

    customer: Customer
    replayed: bool


async def create_customer(
    command: CreateCustomer, repository: CustomerRepository, clock: Clock, rules: ArchiveRules
) -> Entered:
    """A customer staff entered: registered as by the member system (`source` "staff" unless
    given), evaluated, a `customer.created` timeline entry (who, and the names of the fields
    given; the request sealed, to compare a retry with), `customer.registered` announced on
    `members.v1` and what the record's creation means on `archive.v1`.

    Idempotent by (who, key): the same request again returns the first customer; another
    request is an `IdempotencyKeyReusedError`. A phone or e-mail on file already is a
    `DuplicateCustomerError` unless `allow_duplicate`."""
    registration = command.registration
    if registration.source is None:
        registration = registration.model_copy(update={"source": STAFF_SOURCE})
    request = registration.model_dump_json()

    async def attempt() -> Entered:
        first = await repository.get(command.customer_id)
        if first is not None:
            entry = await repository.timeline_entry(command.entry_id)
            # After an erasure the first request cannot be read: the key alone answers.
            if entry is None or (first.erased_at is None and entry.request != request):
                raise IdempotencyKeyReusedError(
                    f"Idempotency-Key {command.key!r} was used for another customer"
                )
            return Entered(first, replayed=True)
        now = to_milliseconds(clock())
        customer = registered_customer(command.customer_id, registration, now)
        if not command.allow_duplicate:
            existing = [found for found, _ in await repository.same_contact(customer)]
            if existing:
                raise DuplicateCustomerError(sorted(existing))
        entered = Entry(command.entry_id, command.by, request=request)
        await repository.save(entered.changes(customer, registration, now, rules))
        return Entered(customer, replayed=False)

    return await retry_on_conflict(attempt)


def registered_customer(
    customer_id: str, registration: members_v1.CustomerRegistered, now: datetime
) -> Customer:
    """A new record, registered as the member system would register it."""
    customer = Customer.first_sighting(customer_id, now, members_v1.CUSTOMER_REGISTERED)
    tags, consents = list(registration.tags), consents_of(registration)
    customer.register(now, profile_of(registration), tags, consents, registration.account_owner)
    return customer


@dataclass(frozen=True)
class Entry:
    """How staff entered a customer (one at a time or imported): the timeline entry's id, who,
    and what the timeline keeps besides the field names."""

    entry_id: str
    by: str
    request: str | None = None
    """The request, sealed, to compare a retry with (`POST /customers`)."""
    imported: bool = False

    def changes(
        self,
        customer: Customer,
        registration: members_v1.CustomerRegistered,
        now: datetime,
        rules: ArchiveRules,
    ) -> Changes:
        """The record evaluated, `customer.created` on the timeline (who, and the names of the
        fields given), `customer.registered` announced on `members.v1` (and marked applied, so
        its echo changes nothing) and what the creation means on `archive.v1`."""
        events = customer.evaluate(now, rules)
        registered = member_event(customer.id, registration, self.entry_id, now)
        given: dict[str, object] = {
            "by": self.by,
            "type": registration.type,
            "source": registration.source,
            "fields": sorted(registration.model_fields_set - {"source"}),
        }
        if self.imported:
            given["imported"] = True
        entry = TimelineEntry(
            self.entry_id, customer.id, now, CUSTOMER_CREATED, given, request=self.request
        )
        outbound = [
            OutboundMessage(MEMBERS.name, registered),
            *to_messages(customer, events, self.entry_id, now),
        ]
        return Changes([customer], [entry], [registered], outbound)


@dataclass(frozen=True)
class PatchCustomer:
    customer_id: str
    changes: dict[str, object]
    """The fields to set, by name: profile fields (`members_v1.CustomerProfileUpdated`'s),
    `tags`, `account_owner` (None: no owner), and `consents` ({channel: {purpose: granted}})."""
    by: str
    """Who asked (the user id), kept on the timeline."""
    expected_version: int | None = None
    """The version the caller read (`If-Match`); None: whatever is stored."""


async def patch_customer(
    command: PatchCustomer, repository: CustomerRepository, clock: Clock, rules: ArchiveRules
) -> Customer:
    """Set the fields, re-derive the record, write a `customer.patched` timeline entry (field
    names and who, no values), announce on `members.v1` the profile fields changed
    (`customer.profile_updated`) and each consent changed (`customer.consent_changed`), and
    publish what changed (`customer.updated`); the record as saved. `NoCustomerError` when
    there is no such customer, `StaleVersionError` when it is not at `expected_version`,
    `CustomerErasedError` for anything but the owner once it is erased."""

    async def attempt() -> Customer:
        customer = await repository.get(command.customer_id)
        if customer is None:
            raise NoCustomerError(command.customer_id)
        if command.expected_version not in (None, customer.version):
            raise StaleVersionError(customer.id, customer.version)
        changes = dict(command.changes)
        consents: Any = changes.pop("consents", None) or {}
        if customer.erased_at is not None and (consents or set(changes) - {"account_owner"}):
            raise CustomerErasedError(f"customer {customer.id!r} was erased")
        now = to_milliseconds(clock())
        changed = customer.update_profile(now, changes)
        granted = [
            members_v1.CustomerConsentChanged(channel=channel, purpose=purpose, granted=value)
            for channel, purposes in sorted(consents.items())
            for purpose, value in sorted(purposes.items())
            if customer.change_consent(now, channel, purpose, value)
        ]
        events = customer.evaluate(now, rules)
        action_id = f"patch-{uuid.uuid4()}"
        entry = TimelineEntry(
            action_id,
            customer.id,
            now,
            "customer.patched",
            {"fields": sorted(command.changes), "by": command.by},
        )
        announced = [
            member_event(customer.id, data, f"{action_id}/{data.channel}/{data.purpose}", now)
            for data in granted
        ]
        if changed:
            values = {name: _current(customer, name) for name in changed}
            updated = members_v1.CustomerProfileUpdated(**values)
            announced.insert(0, member_event(customer.id, updated, action_id, now))
        outbound = [OutboundMessage(MEMBERS.name, event) for event in announced]
        outbound += to_messages(customer, events, action_id, now)
        await repository.save(Changes([customer], [entry], announced, outbound))
        return customer

    return await retry_on_conflict(attempt)


def _current(customer: Customer, name: str) -> object:
    if name in ("tags", "account_owner"):
        return getattr(customer, name)
    return getattr(customer.profile, name)


ContactChannel = Literal["call", "email", "visit", "meeting", "wechat", "social"]
CONTACT_LOGGED = "contact.logged"
"""The timeline type of a contact, made by staff or logged by the call center."""


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
    version: int
    """The customer record's version after it (its `ETag`)."""


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
            return Logged(first, replayed=True, version=customer.version)
        now = to_milliseconds(clock())
        customer.log_contact(now)
        events = customer.evaluate(now, rules)
        summary = None if erased else command.summary
        entry = TimelineEntry(
            command.entry_id, customer.id, now, CONTACT_LOGGED, command.data(), summary=summary
        )
        outbound = to_messages(customer, events, command.entry_id, now)
        await repository.save(Changes([customer], [entry], outbound=outbound))
        return Logged(entry, replayed=False, version=customer.version)

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
