"""What the archive's use cases work with and through: the change set one write saves
(`Changes`), the timeline entries in it, and the ports the MongoDB adapter implements — the
repository the handlers and commands write through (`CustomerRepository`) and the read side the
routes and queries use (`CustomerQueries`).

Handlers, commands, queries, adapters and entry points import these; the adapters import
neither the handlers nor the entry points.
"""

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from crm_archive.domain.apart import FactIds
from crm_archive.domain.customer import Customer
from crm_archive.domain.facts import Order
from crm_archive.domain.rules import Grade, Stage
from crm_archive.domain.search import SearchText
from crm_contracts import CloudEvent
from crm_contracts.members.v1 import CustomerType
from crm_runtime.outbox import OutboundMessage


@dataclass(frozen=True)
class TimelineEntry:
    """One interaction on a customer's timeline. `data` holds no personal data; `summary` (a
    contact's free text) and `topic` (what the call center typed as its subject) may: the
    adapter seals them under the customer's data key, and an erasure destroys that key and
    nulls them."""

    event_id: str
    customer_id: str
    at: datetime
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    summary: str | None = None
    topic: str | None = None
    request: str | None = None
    """What staff sent to make the entry (a customer's creation), kept to compare a retry with:
    personal data, sealed like `summary`, never shown."""


@dataclass(frozen=True)
class Note:
    """An internal note staff wrote about a customer. `text` is personal data: sealed at rest
    under the customer's data key, None once the customer is erased."""

    note_id: str
    customer_id: str
    at: datetime
    by: str
    """The author's user id."""
    text: str | None


@dataclass(frozen=True)
class ItemSpend:
    """What an order spent on one line: `cents` = quantity x unit price, in the order's
    currency."""

    sku: str
    category: str | None
    cents: int


@dataclass(frozen=True)
class OrderLines:
    """An order's lines, kept apart from the record (one document per order, ADR 0008) for
    the customer's product preferences. The first announcement of an order wins."""

    customer_id: str
    order_id: str
    at: datetime
    currency: str
    items: tuple[ItemSpend, ...]


@dataclass(frozen=True)
class Preferences:
    """A customer's top categories and SKUs by spend over a window, the largest first."""

    categories: list[tuple[str, Decimal]] = field(default_factory=list)
    skus: list[tuple[str, Decimal]] = field(default_factory=list)


@dataclass(frozen=True)
class TierChange:
    """A customer's loyalty tier set on their stored record without reading it (ADR 0027): the
    times the record was seen at widen to `first_seen_at` and `last_event_at`, and its version
    goes up, so a writer that read it before saves nothing over it."""

    customer_id: str
    tier: str
    first_seen_at: datetime
    last_event_at: datetime


@dataclass
class Changes:
    """What one batch, sweep or request changes, saved in one transaction."""

    customers: list[Customer] = field(default_factory=list)
    """Evaluated records (`Customer.evaluate`), each with what it keeps apart."""
    timeline: list[TimelineEntry] = field(default_factory=list)
    applied: list[CloudEvent[Any]] = field(default_factory=list)
    """The inbound events applied (the inbox): a redelivery of one changes nothing."""
    outbound: list[OutboundMessage] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    order_lines: list[OrderLines] = field(default_factory=list)
    cancelled_orders: list[tuple[str, str]] = field(default_factory=list)
    """(customer id, order id): their lines no longer count."""
    tiers: list[TierChange] = field(default_factory=list)
    """Tiers of records on file that the batch did not read (none of them in `customers`)."""


class CustomerRepository(Protocol):
    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]: ...

    async def load(
        self, customer_ids: Sequence[str], references: Mapping[str, FactIds] | None = None
    ) -> dict[str, Customer]:
        """The records, with the facts kept apart that `references` names recalled."""
        ...

    async def get(self, customer_id: str) -> Customer | None: ...

    async def on_record(self, customer_ids: Sequence[str]) -> set[str]:
        """Those of `customer_ids` that have a record (records are never deleted)."""
        ...

    async def due_for_review(self, now: datetime, limit: int) -> list[str]: ...

    async def on_file(self, customers: Sequence[Customer]) -> dict[str, list[str]]:
        """For each of `customers` (about to be entered) that shares a phone or an e-mail with
        customers on file, their ids: one query for them all (a bulk import's batch)."""
        ...

    async def timeline_entry(self, event_id: str) -> TimelineEntry | None:
        """One timeline entry by id, its summary opened (None once the customer is erased)."""
        ...

    async def same_contact(self, customer: Customer) -> list[tuple[str, datetime | None]]:
        """(id, registered_at) of a few other customers sharing its phone or email."""
        ...

    async def save(self, changes: Changes) -> None:
        """One transaction: the records (optimistic on `version`: `ConcurrencyConflictError`
        when one changed since it was read), the tiers set on records not read, what they keep
        apart, the timeline, the notes, the inbox, the outbox, and the erasure of erased
        customers (data keys destroyed, the summaries of their timeline and the texts of their
        notes nulled)."""
        ...


@dataclass(frozen=True)
class CustomerFilter:
    """`GET /customers` (and, later, the export of a segment): the customers matching every
    criterion given."""

    grade: Grade | None = None
    stage: Stage | None = None
    owner: str | None = None
    at_risk: bool | None = None
    agreement_customer: bool | None = None
    """An agreement active on the record's last evaluation (the review sweep's day)."""
    type: CustomerType | None = None
    search: SearchText | None = None
    """What `q` asks for: a phone number, an e-mail address or a name fragment
    (`domain.search.parse_search`), matched through keyed hashes."""
    tags: tuple[str, ...] = ()
    """Every one of these tags."""
    city: str | None = None
    """As typed: matched on the normalised city (`domain.search.city_token`)."""
    min_net_spent: Decimal | None = None
    max_net_spent: Decimal | None = None
    """Net spend in the base currency, both bounds included."""
    last_order_after: datetime | None = None
    last_order_before: datetime | None = None
    """The last active order placed at or after / strictly before these times."""


SortField = Literal["net_spent", "last_order_at", "rfm"]


@dataclass(frozen=True)
class CustomerSort:
    """The order of a customer list: by `field` then id (the id alone when None), ascending or
    descending (the id too: ties keep one order). A customer without the value (no last order)
    comes first ascending, last descending."""

    field: SortField | None = None
    descending: bool = False


@dataclass(frozen=True)
class After:
    """Where the previous page of a sorted list ended: its last row's sort value and id."""

    value: Decimal | datetime | int | None
    id: str


@dataclass(frozen=True)
class CustomerRow:
    """A line of the customer list: figures, no personal data."""

    id: str
    grade: Grade | None
    stage: Stage | None
    at_risk: bool
    account_owner: str | None
    order_count: int
    net_spent: Decimal
    last_order_at: datetime | None
    rfm: int | None = None
    """R + F + M (3-15) as of the record's last evaluation; None until it is evaluated again."""

    def sort_value(self, field: SortField | None) -> Decimal | datetime | int | None:
        return None if field is None else getattr(self, field)


class CustomerQueries(Protocol):
    """The read side the HTTP routes and `queries.py` use."""

    async def get(self, customer_id: str) -> Customer | None: ...

    async def exists(self, customer_id: str) -> bool: ...

    async def find(
        self, filters: CustomerFilter, sort: CustomerSort, after: After | None, limit: int
    ) -> list[CustomerRow]:
        """One page of the matching customers in `sort` order, after `after`."""
        ...

    def matching(self, filters: CustomerFilter, sort: CustomerSort) -> AsyncIterator[CustomerRow]:
        """Every matching customer in `sort` order, read page by page (for streamed answers)."""
        ...

    async def records(self, customer_ids: Sequence[str]) -> list[Customer]:
        """The records, personal data opened, in the order given (those that exist)."""
        ...

    async def same_contact(self, customer: Customer) -> list[tuple[str, datetime | None]]:
        """(id, registered_at) of a few other customers sharing its phone or email."""
        ...

    async def timeline_page(
        self, customer_id: str, after: tuple[datetime, str] | None, limit: int, newest_first: bool
    ) -> list[TimelineEntry]:
        """`after`: (at, event id) of the last entry of the previous page."""
        ...

    async def notes_page(
        self, customer_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[Note]:
        """A customer's notes, newest first, texts opened; `after`: (at, note id) of the last
        note of the previous page."""
        ...

    def timeline_entries(self, customer_id: str) -> AsyncIterator[TimelineEntry]:
        """Every timeline entry of a customer, oldest first, read page by page."""
        ...

    def orders(self, customer: Customer) -> AsyncIterator[Order]:
        """Every order of a customer: those kept apart, oldest first, then those held."""
        ...

    async def segments(self) -> dict[str, dict[str, int]]:
        """Customers by grade, by stage and by risk."""
        ...

    async def preferences(
        self, customer_id: str, since: datetime, currency: str, top: int
    ) -> Preferences:
        """The `top` categories and SKUs by spend of the customer's orders placed since `since`
        in `currency`, cancelled ones left out (aggregated in the database)."""
        ...
