"""Use cases: triggers -> notifications (sent, deferred or suppressed), the delivery worker with
claims, retries and provider failover, and the care and digest sweeps.

Plain async functions over a `NotifyRepository` and `Senders`: unit tests use in-memory ones.
"""

import asyncio
import functools
import logging
import uuid
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crm_contracts import CloudEvent, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_contracts.topics import NOTIFY
from crm_notify.domain.digest import Digest
from crm_notify.domain.notification import Claim, Intent, Notification
from crm_notify.domain.policy import Decision, NotifyRules, Preferences, decide, zone_of
from crm_notify.domain.triggers import intents_for, update_preferences
from crm_notify.ports import Batch, DeliveryError, NotifyRepository, Senders, Staff
from crm_runtime.errors import ConcurrencyConflictError, is_transient
from crm_runtime.outbox import OutboundMessage
from crm_runtime.privacy import erasure_confirmation
from crm_runtime.sweeps import Clock, utc_now

log = logging.getLogger(__name__)
SOURCE = "crm/notify"

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
    await _fetch_known(batch, repository, [i for e in fresh for i in intents_for(e)])
    for event in fresh:
        preferences = batch.preferences.setdefault(event.subject, Preferences(event.subject))
        if isinstance(event.data, loyalty_v1.PointsEarned):
            await _add_to_digest(batch, repository, preferences, event)
            continue
        was_registered = preferences.registered
        update_preferences(preferences, event)
        if isinstance(event.data, members_v1.CustomerErasureRequested):
            batch.erased.append(preferences.customer_id)
            batch.outbound.append(erasure_confirmation("notify", event, now, KEPT_AFTER_ERASURE))
        if isinstance(event.data, members_v1.CustomerRegistered) and was_registered:
            continue  # registered again (another source): one welcome per customer
        for intent in intents_for(event):
            await _notify(batch, repository, preferences, intent, rules, staff, now)
    await repository.save(batch, fresh)
    return len(fresh)


async def _fetch_known(
    batch: Batch, repository: NotifyRepository, intents: Sequence[Intent]
) -> None:
    """Which of the messages `intents` ask for exist already (the same trigger again)."""
    ids = [i.notification_id for i in intents]
    if ids:
        batch.known |= await repository.existing(ids)


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
    await _fetch_known(batch, repository, [intent for _, intent in greetings])
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
            await _fetch_known(batch, repository, [intent for _, intent in wishes])
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
        await _fetch_known(batch, repository, [intent for _, intent in summaries])
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
