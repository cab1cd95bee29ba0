"""Use cases: triggers -> notifications (sent, deferred or suppressed), the delivery worker with
claims, retries and provider failover, and the care and digest sweeps.

Plain async functions over a `NotifyRepository` and `Senders`: unit tests use in-memory ones.
"""

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from crm_contracts import CloudEvent, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_contracts.topics import ARCHIVE, LOYALTY, MEMBERS, NOTIFY, TICKETS
from crm_notify.domain.notification import Claim, Intent, Notification
from crm_notify.domain.policy import Decision, NotifyRules, Preferences, decide, zone_of
from crm_runtime.errors import ConcurrencyConflictError, is_transient
from crm_runtime.outbox import OutboundMessage
from crm_runtime.privacy import erasure_confirmation
from crm_runtime.sweeps import Clock, utc_now

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
        ids = [i.notification_id for i in intents]
        if ids:
            self.known |= await repository.existing(ids)


class NotifyRepository(Protocol):
    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]: ...

    async def preferences(self, customer_ids: Sequence[str]) -> dict[str, Preferences]: ...

    async def existing(self, notification_ids: Sequence[str]) -> set[str]: ...

    async def counted_since(self, customer_id: str, since: datetime) -> int: ...

    async def digests(self, ids: Sequence[str]) -> dict[str, Digest]: ...

    async def save(self, batch: Batch, applied: Sequence[CloudEvent[Any]]) -> None: ...

    async def due(self, now: datetime, lapsed: datetime, limit: int) -> list[Notification]:
        """Queued or deferred notifications due by `now`, and `sending` ones whose claim lapsed
        by `lapsed` (the run that claimed them stopped mid-send) first."""
        ...

    async def claim(self, notification: Notification, claim: Claim) -> bool:
        """Mark it `sending` under `claim` if it is still as read (its version); False when
        another run changed or claimed it first."""
        ...

    async def handed_over(self, notification: Notification, claim: Claim, provider: str) -> None:
        """Record, under the claim, that `provider` has the whole message."""
        ...

    async def save_delivery(
        self, notification: Notification, claim: Claim, outbound: Sequence[OutboundMessage]
    ) -> None:
        """Save the outcome with its events, if `claim` still holds it (else
        `ConcurrencyConflictError`: another run took it over after the claim lapsed)."""
        ...

    async def with_birthday(self, month: int, day: int) -> list[Preferences]: ...

    async def registered(self, after: str | None, limit: int) -> list[Preferences]: ...

    async def digests_before(self, day: date, limit: int) -> list[Digest]: ...

    async def delete_digests(self, ids: Sequence[str]) -> None: ...


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
    """Where staff alerts go (the supervisors' webhook)."""

    address: str | None


# -- triggers -------------------------------------------------------------------------------
def intents_for(event: CloudEvent[Any]) -> list[Intent]:
    return [
        replace(intent, trace=event.traceparent, origin=event.source)
        for intent in _intents_for(event)
    ]


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
    notification_id = intent.notification_id
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
    send_timeout_s: float = 30.0,
    clock: Clock = utc_now,
) -> int:
    """Send what is due, one notification at a time: claim it, send it, save the outcome.

    A failure is retried with exponential backoff up to `max_attempts`. Whatever goes wrong with
    one message fails that message (for good unless the error is transient) and the run goes on
    with the next; only a transient fault outside a send (the database down) ends the run.
    A send is abandoned after `send_timeout_s`; a claim lasts twice that (`clock`: real time,
    not the business clock `now`), so a claim that lapses belongs to a run that stopped.
    """
    sent = 0
    lease = timedelta(seconds=2 * send_timeout_s)
    for notification in await repository.due(now, clock(), batch):
        try:
            sent += await _deliver_one(
                notification, now, repository, senders, rules, clock() + lease, send_timeout_s
            )
        except Exception as exc:
            if is_transient(exc):
                raise  # the database is down: the next run tries again
            log.exception(
                "notification skipped",
                extra={"notification": notification.notification_id, "error": type(exc).__name__},
            )
    return sent


async def _deliver_one(
    notification: Notification,
    now: datetime,
    repository: NotifyRepository,
    senders: Senders,
    rules: NotifyRules,
    until: datetime,
    send_timeout_s: float,
) -> int:
    """Claim, send and save one notification; 1 if it was sent."""
    lapsed = notification.claim if notification.status == "sending" else None
    claim = Claim(uuid.uuid4().hex, until)
    if not await repository.claim(notification, claim):
        return 0  # another run has it, or it changed since it was read
    notification.claimed(claim)
    if lapsed is not None and lapsed.handed_over_to:
        # The run that claimed it stopped after the provider had the whole message and before
        # its reply: sending again would make a second e-mail. It is recorded as sent,
        # unconfirmed (README "Delivery").
        notification.sent(now, lapsed.handed_over_to, unconfirmed=True)
        log.warning("delivery unconfirmed", extra={"notification": notification.notification_id})
    else:
        await _send(notification, claim, now, repository, senders, rules, send_timeout_s)
    final = notification.status in ("sent", "failed")
    try:
        await repository.save_delivery(
            notification, claim, [outcome(notification, now)] if final else []
        )
    except ConcurrencyConflictError:
        log.warning("claim lost while sending", extra={"id": notification.notification_id})
        return 0
    return int(notification.status == "sent")


async def _send(
    notification: Notification,
    claim: Claim,
    now: datetime,
    repository: NotifyRepository,
    senders: Senders,
    rules: NotifyRules,
    send_timeout_s: float,
) -> None:
    """One attempt; its outcome is applied to `notification`. Never raises (but cancellation)."""
    handed_over = functools.partial(_record_hand_over, repository, notification, claim)
    try:
        async with asyncio.timeout(send_timeout_s):
            provider = await senders.send(notification, handed_over)
    except Exception as exc:
        permanent, reason = _failure(exc)
        retry = (
            None
            if permanent or notification.attempts + 1 >= rules.max_attempts
            else now + rules.retry_delay(notification.attempts + 1)
        )
        notification.attempt_failed(now, reason, retry)
        log.warning(
            "delivery failed",
            exc_info=not isinstance(exc, DeliveryError),
            extra={
                "notification": notification.notification_id,
                "attempts": notification.attempts,
                "final": retry is None,
                "error": type(exc).__name__,
            },
        )
    else:
        notification.sent(now, provider)


def _failure(exc: Exception) -> tuple[bool, str]:
    """(permanent, reason) of a failed send. An unexpected error (a bug, a header the library
    refuses) is permanent unless transient; its reason names only its type, since its text may
    hold the address or the message."""
    if isinstance(exc, DeliveryError):
        return exc.permanent, str(exc)[:300]
    if isinstance(exc, TimeoutError):
        return False, "no answer from the provider in time"
    return not is_transient(exc), f"{type(exc).__name__} while sending"


async def _record_hand_over(
    repository: NotifyRepository, notification: Notification, claim: Claim, provider: str
) -> None:
    """Best effort: without the record a crash now means one more send (same Message-ID)."""
    try:
        await repository.handed_over(notification, claim, provider)
    except Exception as exc:
        log.warning(
            "hand-over not recorded",
            extra={"notification": notification.notification_id, "error": type(exc).__name__},
        )


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
