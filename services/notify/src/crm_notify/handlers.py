"""Use cases: triggers -> notifications (sent, deferred or suppressed), the delivery worker with
retries and provider failover, and the care and digest sweeps.

Plain async functions over a `NotifyRepository` and `Senders`: unit tests use in-memory ones.
"""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from crm_contracts import CloudEvent, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_contracts.topics import ARCHIVE, LOYALTY, MEMBERS, NOTIFY, TICKETS
from crm_notify.domain.notification import Intent, Notification
from crm_notify.domain.policy import Decision, NotifyRules, Preferences, decide, zone_of
from crm_runtime.errors import ConcurrencyConflictError
from crm_runtime.outbox import OutboundMessage
from crm_runtime.privacy import erasure_confirmation

log = logging.getLogger(__name__)
SOURCE = "crm/notify"

TOPICS = (MEMBERS.name, TICKETS.name, LOYALTY.name, ARCHIVE.name)
KEPT_AFTER_ERASURE = ("that messages were sent, and their status history",)
CONSUMED_TYPES = (
    *members_v1.EVENTS,
    tickets_v1.TICKET_OPENED,
    tickets_v1.TICKET_RESOLVED,
    tickets_v1.TICKET_SLA_BREACHED,
    loyalty_v1.TIER_CHANGED,
    loyalty_v1.POINTS_EXPIRING_SOON,
    loyalty_v1.POINTS_EARNED,
    archive_v1.CUSTOMER_CHURN_RISK_RAISED,
)


@dataclass
class Digest:
    """Points earned by a customer on one local day, sent the next day as one message."""

    customer_id: str
    day: date
    points: int = 0
    orders: int = 0
    balance: int = 0

    @property
    def digest_id(self) -> str:
        return f"{self.customer_id}/{self.day.isoformat()}"


@dataclass
class Batch:
    """What one batch changes, saved in one transaction."""

    preferences: dict[str, Preferences] = field(default_factory=dict)
    notifications: list[Notification] = field(default_factory=list)
    outbound: list[OutboundMessage] = field(default_factory=list)
    digests: dict[str, Digest] = field(default_factory=dict)
    erased: list[str] = field(default_factory=list)
    known: set[str] = field(default_factory=set)
    """Notification ids that exist already or were made in this batch (fetched up front)."""

    async def fetch_known(self, repository: "NotifyRepository", intents: Sequence[Intent]) -> None:
        ids = [Notification.id_for(i.cause, i.template) for i in intents]
        if ids:
            self.known |= await repository.existing(ids)


class NotifyRepository(Protocol):
    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]: ...

    async def preferences(self, customer_ids: Sequence[str]) -> dict[str, Preferences]: ...

    async def existing(self, notification_ids: Sequence[str]) -> set[str]: ...

    async def counted_since(self, customer_id: str, since: datetime) -> int: ...

    async def digests(self, ids: Sequence[str]) -> dict[str, Digest]: ...

    async def save(self, batch: Batch, applied: Sequence[CloudEvent[Any]]) -> None: ...

    async def due(self, now: datetime, limit: int) -> list[Notification]: ...

    async def save_delivery(
        self, notification: Notification, outbound: Sequence[OutboundMessage]
    ) -> None: ...

    async def with_birthday(self, month: int, day: int) -> list[Preferences]: ...

    async def registered(self, after: str | None, limit: int) -> list[Preferences]: ...

    async def digests_before(self, day: date, limit: int) -> list[Digest]: ...

    async def delete_digests(self, ids: Sequence[str]) -> None: ...


class Senders(Protocol):
    async def send(self, notification: Notification) -> str:
        """Deliver; return the provider's name. Raise `DeliveryError` on failure."""
        ...


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True)
class Staff:
    """Where staff alerts go (the supervisors' webhook)."""

    address: str | None


# -- triggers -------------------------------------------------------------------------------
def intents_for(event: CloudEvent[Any]) -> list[Intent]:
    return [replace(intent, trace=event.traceparent) for intent in _intents_for(event)]


def _intents_for(event: CloudEvent[Any]) -> list[Intent]:
    data, cause = event.data, event.id
    match data:
        case members_v1.CustomerRegistered():
            return [Intent("welcome", "transactional", cause)]
        case tickets_v1.TicketOpened():
            return [Intent("ticket_ack", "transactional", cause, {"ticket_id": data.ticket_id})]
        case tickets_v1.TicketResolved():
            return [Intent("survey_invite", "transactional", cause, {"ticket_id": data.ticket_id})]
        case tickets_v1.TicketSlaBreached():
            return [
                Intent(
                    "sla_alert",
                    "staff",
                    cause,
                    {"ticket_id": data.ticket_id, "priority": data.priority, "target": data.target},
                )
            ]
        case loyalty_v1.TierChanged():
            tiers: dict[str, Any] = {"tier": data.tier, "previous_tier": data.previous_tier}
            return [Intent("tier_changed", "transactional", cause, tiers)]
        case loyalty_v1.PointsExpiringSoon():
            expiring: dict[str, Any] = {
                "points": data.points,
                "expires_on": data.expires_at.date().isoformat(),
            }
            return [Intent("points_expiring", "transactional", cause, expiring)]
        case archive_v1.CustomerChurnRiskRaised():
            return [Intent("retention", "marketing", cause)]
    return []


def update_preferences(preferences: Preferences, event: CloudEvent[Any], batch: Batch) -> None:
    data = event.data
    match data:
        case members_v1.CustomerRegistered():
            if preferences.registered:
                return  # the earliest registration wins
            preferences.registered = True
            preferences.name = data.name
            preferences.email = str(data.email) if data.email else None
            preferences.phone = data.phone
            preferences.birthday = data.birthday
            for channel, consent in data.consents.items():
                preferences.consents[channel] = {
                    "transactional": consent.transactional,
                    "marketing": consent.marketing,
                }
        case members_v1.CustomerProfileUpdated():
            for name in ("name", "phone", "birthday"):
                if name in data.model_fields_set:
                    setattr(preferences, name, getattr(data, name))
            if "email" in data.model_fields_set:
                preferences.email = str(data.email) if data.email else None
        case members_v1.CustomerConsentChanged():
            preferences.consents.setdefault(data.channel, {})[data.purpose] = data.granted
        case members_v1.CustomerErasureRequested():
            fresh = Preferences(preferences.customer_id)
            preferences.__dict__.update(fresh.__dict__)
            batch.erased.append(preferences.customer_id)


async def apply_events(
    events: Sequence[CloudEvent[Any]],
    repository: NotifyRepository,
    *,
    rules: NotifyRules,
    staff: Staff,
    now: datetime,
) -> int:
    fresh = await repository.unprocessed(events)
    if not fresh:
        return 0
    batch = Batch()
    batch.preferences = await repository.preferences(sorted({e.subject for e in fresh}))
    await batch.fetch_known(repository, [i for e in fresh for i in intents_for(e)])
    for event in fresh:
        preferences = batch.preferences.setdefault(event.subject, Preferences(event.subject))
        if isinstance(event.data, loyalty_v1.PointsEarned):
            await _add_to_digest(batch, repository, preferences, event)
            continue
        was_registered = preferences.registered
        update_preferences(preferences, event, batch)
        if isinstance(event.data, members_v1.CustomerErasureRequested):
            batch.outbound.append(erasure_confirmation("notify", event, now, KEPT_AFTER_ERASURE))
        if isinstance(event.data, members_v1.CustomerRegistered) and was_registered:
            continue  # registered again (another source): one welcome per customer
        for intent in intents_for(event):
            await _notify(batch, repository, preferences, intent, rules, staff, now)
    await repository.save(batch, fresh)
    return len(fresh)


async def _add_to_digest(
    batch: Batch, repository: NotifyRepository, preferences: Preferences, event: CloudEvent[Any]
) -> None:
    data: loyalty_v1.PointsEarned = event.data
    if data.reason != "order" or data.points <= 0:
        return
    day = event.time.astimezone(zone_of(preferences)).date()
    digest_id = Digest(preferences.customer_id, day).digest_id
    if digest_id not in batch.digests:
        known = await repository.digests([digest_id])
        batch.digests[digest_id] = known.get(digest_id) or Digest(preferences.customer_id, day)
    digest = batch.digests[digest_id]
    digest.points += data.points
    digest.orders += 1
    digest.balance = data.balance


async def _notify(
    batch: Batch,
    repository: NotifyRepository,
    preferences: Preferences,
    intent: Intent,
    rules: NotifyRules,
    staff: Staff,
    now: datetime,
) -> None:
    """Decide and make one message, unless it exists (the same trigger again: one message).
    The caller has fetched the existing ids into `batch.known`."""
    notification_id = Notification.id_for(intent.cause, intent.template)
    if notification_id in batch.known:
        return
    if intent.purpose == "staff":
        decision = (
            Decision("send", "webhook", send_at=now)
            if staff.address
            else Decision("suppress", "webhook", reason="no staff webhook configured")
        )
    else:
        counted = 0
        if intent.purpose != "transactional":  # the daily cap counts only these
            zone = zone_of(preferences)
            midnight = datetime.combine(now.astimezone(zone).date(), time(0), tzinfo=zone)
            counted = await repository.counted_since(preferences.customer_id, midnight)
        counted += sum(
            1
            for n in batch.notifications
            if n.customer_id == preferences.customer_id
            and n.purpose != "transactional"
            and n.status != "suppressed"
        )
        decision = decide(preferences, intent.purpose, now, counted, rules)
    notification = Notification.create(
        preferences.customer_id, intent, decision, preferences, now, staff_address=staff.address
    )
    batch.notifications.append(notification)
    batch.known.add(notification_id)
    if notification.status == "suppressed":
        batch.outbound.append(outcome(notification, now))


# -- delivery -------------------------------------------------------------------------------
async def deliver(
    now: datetime,
    repository: NotifyRepository,
    senders: Senders,
    *,
    rules: NotifyRules,
    batch: int = 100,
) -> int:
    """Send what is due; a failure is retried with exponential backoff up to `max_attempts`."""
    sent = 0
    for notification in await repository.due(now, batch):
        try:
            provider = await senders.send(notification)
        except DeliveryError as exc:
            retry = (
                None
                if exc.permanent or notification.attempts + 1 >= rules.max_attempts
                else now + rules.retry_delay(notification.attempts + 1)
            )
            notification.attempt_failed(now, str(exc)[:300], retry)
            log.warning(
                "delivery failed",
                extra={
                    "notification": notification.notification_id,
                    "attempts": notification.attempts,
                    "final": retry is None,
                },
            )
        else:
            notification.sent(now, provider)
            sent += 1
        final = notification.status in ("sent", "failed")
        try:
            await repository.save_delivery(
                notification, [outcome(notification, now)] if final else []
            )
        except ConcurrencyConflictError:
            log.warning(
                "notification changed while sending", extra={"id": notification.notification_id}
            )
    return sent


def outcome(notification: Notification, now: datetime) -> OutboundMessage:
    base: dict[str, Any] = {
        "notification_id": notification.notification_id,
        "template": notification.template,
        "channel": notification.channel or "email",
        "cause_event_id": notification.cause[:128],
    }
    data: Any
    if notification.status == "sent":
        event_type = notify_v1.NOTIFICATION_SENT
        data = notify_v1.NotificationSent(
            **base, provider=notification.provider or "", attempts=max(1, notification.attempts)
        )
    elif notification.status == "failed":
        event_type = notify_v1.NOTIFICATION_FAILED
        reason = notification.history[-1].reason or "failed"
        data = notify_v1.NotificationFailed(
            **base, reason=reason[:500], attempts=max(1, notification.attempts)
        )
    else:
        event_type = notify_v1.NOTIFICATION_SUPPRESSED
        reason = notification.history[-1].reason or "suppressed"
        data = notify_v1.NotificationSuppressed(**base, reason=reason[:500])
    event = new_event(
        event_type,
        source=SOURCE,
        subject=notification.customer_id,
        data=data,
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{notification.notification_id}/{event_type}")),
        time=now,
    )
    return OutboundMessage(NOTIFY.name, event, caused_by=notification.trace)


# -- sweeps ---------------------------------------------------------------------------------
async def care_sweep(
    now: datetime,
    repository: NotifyRepository,
    *,
    rules: NotifyRules,
    holidays: dict[date, str],
    zone_name: str,
) -> int:
    """Birthdays (生日祝福) and holidays (节日问候): marketing messages, consent and quiet hours
    apply. Idempotent: one message per customer per birthday year / holiday."""
    batch = Batch()
    today = now.astimezone(ZoneInfo(zone_name)).date()
    celebrated = await repository.with_birthday(today.month, today.day)
    greetings = [
        (p, Intent("birthday", "marketing", f"birthday/{p.customer_id}/{today.year}"))
        for p in celebrated
    ]
    await batch.fetch_known(repository, [intent for _, intent in greetings])
    for preferences, intent in greetings:
        await _notify(batch, repository, preferences, intent, rules, Staff(None), now)
    holiday = holidays.get(today)
    if holiday:
        after: str | None = None
        while True:
            page = await repository.registered(after, 500)
            if not page:
                break
            wishes = [
                (
                    p,
                    Intent(
                        "holiday",
                        "marketing",
                        f"holiday/{today}/{p.customer_id}",
                        {"holiday": holiday},
                    ),
                )
                for p in page
            ]
            await batch.fetch_known(repository, [intent for _, intent in wishes])
            for preferences, intent in wishes:
                await _notify(batch, repository, preferences, intent, rules, Staff(None), now)
            after = page[-1].customer_id
    made = len(batch.notifications)
    if made:
        await repository.save(batch, [])
    return made


async def digest_sweep(now: datetime, repository: NotifyRepository, *, rules: NotifyRules) -> int:
    """Yesterday's (and older) points digests become one message each."""
    made = 0
    while True:
        digests = await repository.digests_before(now.date(), 200)
        if not digests:
            return made
        batch = Batch()
        known = await repository.preferences(sorted({d.customer_id for d in digests}))
        summaries = [(d, _digest_intent(d)) for d in digests]
        await batch.fetch_known(repository, [intent for _, intent in summaries])
        for digest, intent in summaries:
            preferences = known.get(digest.customer_id) or Preferences(digest.customer_id)
            await _notify(batch, repository, preferences, intent, rules, Staff(None), now)
        await repository.save(batch, [])
        await repository.delete_digests([d.digest_id for d in digests])
        made += len(digests)


def _digest_intent(digest: Digest) -> Intent:
    return Intent(
        "points_digest",
        "transactional",
        f"digest/{digest.digest_id}",
        {
            "points": digest.points,
            "orders": digest.orders,
            "balance": digest.balance,
            "day": digest.day.isoformat(),
        },
    )
