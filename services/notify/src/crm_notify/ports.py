"""What notify's use cases work with and through: the change set one write saves (`Changes`),
the repository and the senders (ports the adapters implement), and where staff alerts go.

Handlers, commands, the delivery worker, adapters and entry points import these: the adapters
implement them without importing any use case (an import-linter contract).
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from crm_contracts import CloudEvent
from crm_notify.domain.digest import Digest
from crm_notify.domain.notification import Claim, Notification
from crm_notify.domain.policy import Preferences
from crm_notify.domain.staff import StaffMember
from crm_runtime.outbox import OutboundMessage


@dataclass
class Changes:
    """What one batch, sweep or command changes, saved in one transaction."""

    preferences: dict[str, Preferences] = field(default_factory=dict)
    """Preferences to write whole, by customer id."""
    notifications: list[Notification] = field(default_factory=list)
    """New notifications (their id is unique: the same trigger again is a conflict)."""
    cancelled: list[Notification] = field(default_factory=list)
    """Waiting notifications cancelled by a withdrawal, written under the version read (a
    delivery run that claimed one meanwhile makes it a conflict: the write is redone)."""
    released: list[Notification] = field(default_factory=list)
    """Stored notifications that awaited their customer's registration, decided now (queued,
    deferred or suppressed): written under the version read, as `cancelled` are."""
    digests: dict[str, Digest] = field(default_factory=dict)
    """What to add to points digests, by id: `points` and `orders` are added to the stored
    digest's (made if none), `balance` (the latest) replaces its. No read before the write."""
    sent_digests: list[Digest] = field(default_factory=list)
    """Digests made into messages (by the digest sweep): deleted only if still as read (the
    same orders and points), else `ConcurrencyConflictError`, so points added meanwhile are
    never deleted unsent."""
    applied: list[CloudEvent[Any]] = field(default_factory=list)
    """The inbound events applied (the inbox)."""
    unmarked: set[str] = field(default_factory=set)
    """The inbox keys of applied events that get no mark: applied again, they change nothing
    (ADR 0025)."""
    outbound: list[OutboundMessage] = field(default_factory=list)
    """The events to publish (the outbox)."""
    erased: list[str] = field(default_factory=list)
    """Customers whose keys are destroyed and whose messages are redacted now."""


@dataclass(frozen=True)
class NotificationSummary:
    """A line of the notification list: no address, subject or body."""

    id: str
    customer_id: str
    template: str
    purpose: str
    channel: str | None
    status: str
    attempts: int
    created_at: datetime
    reason: str | None


class NotifyQueries(Protocol):
    """The read side the HTTP routes use."""

    async def find(
        self, filters: dict[str, Any], after: str | None, limit: int
    ) -> list[NotificationSummary]: ...

    async def get(self, notification_id: str) -> Notification | None: ...

    async def preferences(self, customer_ids: Sequence[str]) -> dict[str, Preferences]: ...


class NotifyRepository(Protocol):
    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]: ...

    async def preferences(self, customer_ids: Sequence[str]) -> dict[str, Preferences]: ...

    async def standing(self, customer_ids: Sequence[str]) -> dict[str, Preferences]:
        """Their preferences without the sealed fields (name, addresses, birthday: None): what
        the send-time check needs, read without opening personal data or a data key."""
        ...

    async def waiting(self, customer_ids: Sequence[str]) -> list[Notification]:
        """The customers' notifications still queued or deferred (what a withdrawal cancels)."""
        ...

    async def awaiting(self, customer_ids: Sequence[str]) -> list[Notification]:
        """The customers' notifications awaiting their registration (what it releases)."""
        ...

    async def awaiting_over(self, now: datetime, limit: int) -> list[Notification]:
        """Notifications whose wait for their customer's registration is over by `now`."""
        ...

    async def existing(self, notification_ids: Sequence[str]) -> set[str]: ...

    async def counted_since(self, customer_id: str, since: datetime) -> int: ...

    async def time_zones(self, customer_ids: Sequence[str]) -> dict[str, str]:
        """The time zones of those customers that have preferences (nothing else is read)."""
        ...

    async def save(self, changes: Changes) -> None:
        """The one write of batches, sweeps and commands: preferences, new and cancelled
        notifications, digests, erasures, inbox and outbox in one transaction. Preferences and
        cancelled notifications are written only if still at the version read, else
        `ConcurrencyConflictError` (transient: the batch or command is redone on fresh reads)."""
        ...

    async def due(self, now: datetime, lapsed: datetime, limit: int) -> list[Notification]:
        """Queued or deferred notifications due by `now`, and `sending` ones whose claim lapsed
        by `lapsed` (the run that claimed them stopped mid-send) first."""
        ...

    async def due_among(self, notification_ids: Sequence[str], now: datetime) -> list[Notification]:
        """Those of `notification_ids` still queued or deferred and due by `now` (what a batch
        just decided, to send right after its commit)."""
        ...

    async def claim_all(
        self, notifications: Sequence[Notification], claim: Claim
    ) -> list[Notification]:
        """Mark each `sending` under `claim` if it is still as read (its version), in one
        round trip: those claimed, in order (their versions advanced). One another run changed
        or claimed first is left out."""
        ...

    async def handed_over(self, notification: Notification, claim: Claim, provider: str) -> None:
        """Record, under the claim, that `provider` has the whole message."""
        ...

    async def save_deliveries(
        self,
        notifications: Sequence[Notification],
        claim: Claim,
        outbound: Sequence[OutboundMessage],
    ) -> None:
        """The delivery worker's own write, the end of its claim: save the outcomes (the
        delivery fields only, so a redaction by an erasure meanwhile stays) with their events,
        in one transaction, if `claim` still holds every one of them; else nothing is saved and
        `ConcurrencyConflictError` is raised (another run took one over after its claim
        lapsed)."""
        ...

    async def with_birthday(self, month: int, day: int) -> list[Preferences]: ...

    async def registered(self, after: str | None, limit: int) -> list[Preferences]: ...

    async def digests_closed(self, now: datetime, limit: int) -> list[Digest]:
        """Digests whose local day has closed by `now` (`Digest.closes`: `closes_at`, or for
        those stored without it, the day's end at UTC−12)."""
        ...


HandedOver = Callable[[str], Awaitable[None]]
"""Called (and awaited) with the provider's name once the provider has the whole message and
only its reply is missing, where the protocol shows that moment (SMTP: the end of DATA)."""


class Senders(Protocol):
    async def send(self, notification: Notification, handed_over: HandedOver) -> str:
        """Deliver; return the provider's name. Raise `DeliveryError` on failure."""
        ...


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True)
class Staff:
    """Where staff messages go: alerts to the supervisors' webhook (`address`), and messages to
    named people by their user id (`people`, the address book `CRM_NOTIFY_STAFF`)."""

    address: str | None
    people: dict[str, StaffMember] = field(default_factory=dict)
