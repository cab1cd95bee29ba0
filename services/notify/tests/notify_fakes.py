"""In-memory stand-ins for the notify repository and the channels: the unit tests' world."""

import copy
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from crm_contracts import CloudEvent, event_key
from crm_notify.domain.digest import Digest
from crm_notify.domain.notification import Claim, Notification
from crm_notify.domain.policy import Preferences
from crm_notify.ports import Changes, DeliveryError, HandedOver
from crm_runtime.errors import ConcurrencyConflictError
from crm_runtime.outbox import OutboundMessage


class InMemoryNotify:
    def __init__(self) -> None:
        self.prefs: dict[str, Preferences] = {}
        self.notifications: dict[str, Notification] = {}
        self.digests_: dict[str, Digest] = {}
        self.processed: set[str] = set()
        self.outbox: list[OutboundMessage] = []
        self.counts_read = 0

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        return [e for e in events if event_key(e) not in self.processed]

    async def preferences(self, customer_ids: Sequence[str]) -> dict[str, Preferences]:
        return {c: copy.deepcopy(self.prefs[c]) for c in customer_ids if c in self.prefs}

    async def standing(self, customer_ids: Sequence[str]) -> dict[str, Preferences]:
        return {
            c: replace(copy.deepcopy(p), name=None, email=None, phone=None, birthday=None)
            for c in customer_ids
            if (p := self.prefs.get(c)) is not None
        }

    async def existing(self, notification_ids: Sequence[str]) -> set[str]:
        return {i for i in notification_ids if i in self.notifications}

    async def counted_since(self, customer_id: str, since: datetime) -> int:
        self.counts_read += 1
        return sum(
            1
            for n in self.notifications.values()
            if n.customer_id == customer_id
            and n.created_at >= since
            and n.purpose == "marketing"
            and n.status != "suppressed"
            and n.awaiting_until is None
        )

    async def time_zones(self, customer_ids: Sequence[str]) -> dict[str, str]:
        return {c: self.prefs[c].time_zone for c in customer_ids if c in self.prefs}

    async def waiting(self, customer_ids: Sequence[str]) -> list[Notification]:
        return [
            copy.deepcopy(n)
            for n in self.notifications.values()
            if n.customer_id in customer_ids and n.status in ("queued", "deferred")
        ]

    async def awaiting(self, customer_ids: Sequence[str]) -> list[Notification]:
        return [
            copy.deepcopy(n)
            for n in self.notifications.values()
            if n.customer_id in customer_ids and n.awaiting
        ]

    async def awaiting_over(self, now: datetime, limit: int) -> list[Notification]:
        over = [
            copy.deepcopy(n)
            for n in self.notifications.values()
            if n.awaiting and n.awaiting_until is not None and n.awaiting_until <= now
        ]
        return sorted(over, key=lambda n: n.awaiting_until or now)[:limit]

    async def due_among(self, notification_ids: Sequence[str], now: datetime) -> list[Notification]:
        return [
            copy.deepcopy(n)
            for i in notification_ids
            if (n := self.notifications.get(i)) is not None
            and n.status in ("queued", "deferred")
            and n.next_attempt_at is not None
            and n.next_attempt_at <= now
        ]

    async def save(self, changes: Changes) -> None:
        """All or nothing, like the transaction: versions are checked before anything is kept."""
        for p in changes.preferences.values():
            stored = self.prefs.get(p.customer_id)
            if p.version != (stored.version if stored else 0):
                raise ConcurrencyConflictError(f"preferences of {p.customer_id} changed")
        for n in [*changes.cancelled, *changes.released]:
            if self.notifications[n.notification_id].version != n.version:
                raise ConcurrencyConflictError(f"notification {n.notification_id} changed")
        for d in changes.sent_digests:  # deleted only if still as read, as the store does
            stored_digest = self.digests_.get(d.digest_id)
            if stored_digest is None or (stored_digest.orders, stored_digest.points) != (
                d.orders,
                d.points,
            ):
                raise ConcurrencyConflictError(f"digest {d.digest_id} changed")
        for p in changes.preferences.values():
            p.version += 1
            self.prefs[p.customer_id] = copy.deepcopy(p)
        for n in changes.notifications:
            assert n.notification_id not in self.notifications, "a notification made twice"
            self.notifications[n.notification_id] = copy.deepcopy(n)
        for n in [*changes.cancelled, *changes.released]:
            saved = copy.deepcopy(n)
            saved.version += 1
            self.notifications[n.notification_id] = saved
        for d in changes.sent_digests:
            del self.digests_[d.digest_id]
        for d in changes.digests.values():  # added to, as the store's `$inc` does
            stored_digest = self.digests_.setdefault(
                d.digest_id,
                Digest(d.customer_id, d.day, closes_at=d.closes_at, opened_by=d.opened_by),
            )
            stored_digest.points += d.points
            stored_digest.orders += d.orders
            stored_digest.balance = d.balance
        for customer_id in changes.erased:
            for digest in [d for d in self.digests_.values() if d.customer_id == customer_id]:
                del self.digests_[digest.digest_id]
            for n in self.notifications.values():
                if n.customer_id == customer_id:
                    n.redact()
        marked = (e for e in changes.applied if event_key(e) not in changes.unmarked)
        self.processed.update(event_key(e) for e in marked)  # ADR 0025
        self.outbox.extend(changes.outbound)

    async def due(self, now: datetime, lapsed: datetime, limit: int) -> list[Notification]:
        stopped = [
            copy.deepcopy(n)
            for n in self.notifications.values()
            if n.status == "sending" and n.claim is not None and n.claim.until <= lapsed
        ]
        due = [
            copy.deepcopy(n)
            for n in self.notifications.values()
            if n.status in ("queued", "deferred")
            and n.next_attempt_at is not None
            and n.next_attempt_at <= now
        ]
        return [*stopped, *sorted(due, key=lambda n: n.next_attempt_at or now)][:limit]

    async def claim_all(
        self, notifications: Sequence[Notification], claim: Claim
    ) -> list[Notification]:
        claimed = []
        for notification in notifications:
            stored = self.notifications[notification.notification_id]
            if stored.version != notification.version:
                continue
            stored.status, stored.claim = "sending", claim
            stored.version += 1
            notification.version += 1
            claimed.append(notification)
        return claimed

    async def handed_over(self, notification: Notification, claim: Claim, provider: str) -> None:
        stored = self.notifications[notification.notification_id]
        if stored.claim is not None and stored.claim.token == claim.token:
            stored.claim = replace(stored.claim, handed_over_to=provider)
            stored.version += 1

    async def save_deliveries(
        self,
        notifications: Sequence[Notification],
        claim: Claim,
        outbound: Sequence[OutboundMessage],
    ) -> None:
        stored = [self.notifications[n.notification_id] for n in notifications]
        if any(s.claim is None or s.claim.token != claim.token for s in stored):
            raise ConcurrencyConflictError("claim lost")  # nothing saved, as a transaction
        for notification, before in zip(notifications, stored, strict=True):
            saved = copy.deepcopy(notification)
            saved.to, saved.subject, saved.body = before.to, before.subject, before.body
            saved.version = before.version + 1
            self.notifications[notification.notification_id] = saved
            notification.version = saved.version
        self.outbox.extend(outbound)

    async def with_birthday(self, month: int, day: int) -> list[Preferences]:
        return [
            copy.deepcopy(p)
            for p in self.prefs.values()
            if p.registered and p.birthday and (p.birthday.month, p.birthday.day) == (month, day)
        ]

    async def registered(self, after: str | None, limit: int) -> list[Preferences]:
        ids = sorted(
            i for i, p in self.prefs.items() if p.registered and (after is None or i > after)
        )
        return [copy.deepcopy(self.prefs[i]) for i in ids[:limit]]

    async def digests_closed(self, now: datetime, limit: int) -> list[Digest]:
        return [copy.deepcopy(d) for d in self.digests_.values() if d.closes <= now][:limit]

    def by_template(self, template: str) -> list[Notification]:
        return [n for n in self.notifications.values() if n.template == template]


class FakeSenders:
    """Records what is sent; fails the next `failures` attempts (or for good when permanent);
    raises `errors[customer_id]` for that customer's messages; reports the hand-over."""

    def __init__(
        self,
        failures: int = 0,
        *,
        permanent: bool = False,
        errors: dict[str, Exception] | None = None,
    ) -> None:
        self.failures = failures
        self.permanent = permanent
        self.errors = errors or {}
        self.sent: list[Notification] = []
        self.attempts = 0

    async def send(self, notification: Notification, handed_over: HandedOver) -> str:
        self.attempts += 1
        if notification.customer_id in self.errors:
            raise self.errors[notification.customer_id]
        if self.failures > 0:
            self.failures -= 1
            raise DeliveryError("connection refused", permanent=self.permanent)
        await handed_over("fake")
        self.sent.append(notification)
        return "fake"
