"""What loyalty's use cases work with and through: the change set one write saves (`Changes`)
and the ports the adapters implement — the repository of the handlers and commands, and the read
side of the routes.

Handlers, commands, adapters and entry points import these; the adapters import no use case.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from crm_contracts import CloudEvent
from crm_loyalty.domain.account import Account
from crm_loyalty.domain.ledger import Entry
from crm_runtime.outbox import OutboundMessage


@dataclass
class Changes:
    """What one batch, sweep or command changes, saved in one transaction."""

    accounts: list[Account] = field(default_factory=list)
    """New or changed accounts (optimistic concurrency on their version)."""
    entries: list[Entry] = field(default_factory=list)
    """New ledger lines (append-only: an entry id written twice is a conflict)."""
    applied: list[CloudEvent[Any]] = field(default_factory=list)
    """The inbound events applied (the inbox)."""
    unmarked: set[str] = field(default_factory=set)
    """The inbox keys of applied events that get no mark: applied again, they change nothing
    (ADR 0025)."""
    outbound: list[OutboundMessage] = field(default_factory=list)
    """The events to publish (the outbox)."""
    erased: list[str] = field(default_factory=list)
    """Customers whose personal data (birthday, staff-typed reasons) goes now."""


class AccountRepository(Protocol):
    """What the handlers and commands read and write."""

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]: ...

    async def load(
        self,
        customer_ids: Sequence[str],
        orders: Mapping[str, Collection[str]] | None = None,
    ) -> dict[str, Account]:
        """The accounts that exist, with the orders kept apart that `orders` names (by
        customer) brought back into them (`Account.recall`)."""
        ...

    async def due(self, sweep: str, now: datetime, limit: int) -> list[str]: ...

    async def entry(self, entry_id: str) -> Entry | None: ...

    async def save(self, changes: Changes) -> None:
        """One transaction; each account is compacted first (`Account.compact`) and what it
        settles is kept apart."""
        ...


class AccountQueries(Protocol):
    """The read side the HTTP routes use."""

    async def get(self, customer_id: str) -> Account | None: ...

    async def exists(self, customer_id: str) -> bool: ...

    async def ledger_page(
        self, customer_id: str, before_seq: int | None, limit: int
    ) -> list[Entry]: ...

    async def liability(self, now: datetime) -> dict[str, Any]:
        """The liability report (`queries.liability_report`), aggregated in the database."""
        ...
