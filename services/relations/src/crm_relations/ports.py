"""What relations' use cases work with and through: the change set one write saves (`Changes`),
the repository of the handlers and commands, and the read side of the routes.

Handlers, commands, adapters and entry points import these; the adapters import no use case.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from crm_contracts import CloudEvent
from crm_relations.domain.agreement import Agreement, AgreementStatus, OrderLine
from crm_relations.domain.customer import Customer
from crm_relations.domain.task import Task, TaskStatus
from crm_runtime.outbox import OutboundMessage


@dataclass
class Changes:
    """What one batch, sweep or command changes, saved in one transaction."""

    customers: list[Customer] = field(default_factory=list)
    """New or changed customers (optimistic concurrency on their version)."""
    tasks: list[Task] = field(default_factory=list)
    """New or changed tasks (optimistic concurrency on their version)."""
    agreements: list[Agreement] = field(default_factory=list)
    """New or changed agreements (optimistic concurrency on their version)."""
    order_lines: list[OrderLine] = field(default_factory=list)
    """New or changed order lines (an order as an agreement counted it)."""
    applied: list[CloudEvent[Any]] = field(default_factory=list)
    """The inbound events applied (the inbox)."""
    unmarked: set[str] = field(default_factory=set)
    """The inbox keys of applied events that get no mark: applied again, they change nothing
    (ADR 0025)."""
    outbound: list[OutboundMessage] = field(default_factory=list)
    """The events to publish (the outbox)."""
    erased: list[str] = field(default_factory=list)
    """Customers whose personal data (task summaries, price notes) goes now."""
    digests: list[tuple[date, str]] = field(default_factory=list)
    """Morning digests given now, as (day, owner): the digest sweep gives each once."""


@dataclass(frozen=True)
class TaskFilter:
    owner: str | None = None
    """A user id; `queue`: tasks without an owner; None: everyone's."""
    status: TaskStatus | None = None
    due_before: datetime | None = None
    customer_id: str | None = None


@dataclass(frozen=True)
class AgreementFilter:
    customer_id: str | None = None
    status: AgreementStatus | None = None
    owner: str | None = None


class RelationsRepository(Protocol):
    """What the handlers and commands read and write."""

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]: ...

    async def customers(self, customer_ids: Sequence[str]) -> dict[str, Customer]: ...

    async def tasks(self, task_ids: Sequence[str]) -> dict[str, Task]: ...

    async def open_tasks(self, customer_ids: Sequence[str]) -> list[Task]:
        """Open or overdue tasks of these customers."""
        ...

    async def agreements(self, agreement_ids: Sequence[str]) -> dict[str, Agreement]: ...

    async def agreements_of(self, customer_ids: Sequence[str]) -> list[Agreement]:
        """The customers' active agreements."""
        ...

    async def order_lines(
        self, customer_ids: Sequence[str], order_ids: Sequence[str]
    ) -> list[OrderLine]: ...

    async def tasks_to_notice(self, now: datetime, limit: int) -> list[Task]:
        """Open tasks whose next overdue notice is due (`next_notice_at` <= now)."""
        ...

    async def active_agreements(self, after_id: str | None, limit: int) -> list[Agreement]: ...

    async def owners_due(self, until: datetime, now: datetime) -> dict[str, tuple[int, int]]:
        """Per owner (the queue aside): (open or overdue tasks due by `until`, those of them
        due before `now`), counted in the database."""
        ...

    async def due_of(self, owner: str, until: datetime, limit: int) -> list[Task]:
        """The owner's open or overdue tasks due by `until`, oldest due first."""
        ...

    async def digests_given(self, day: date) -> set[str]:
        """The owners whose digest of `day` was given already."""
        ...

    async def save(self, changes: Changes) -> None: ...


class RelationsQueries(Protocol):
    """The read side the HTTP routes use."""

    async def task_page(
        self, filters: TaskFilter, after: tuple[datetime, str] | None, limit: int
    ) -> list[Task]:
        """Tasks by due time, then id."""
        ...

    async def agreement_page(
        self, filters: AgreementFilter, after: str | None, limit: int
    ) -> list[Agreement]: ...

    async def follow_up_report(self, now: datetime, since: date, until: date) -> dict[str, Any]:
        """`queries.follow_up_report`, aggregated in the database."""
        ...
