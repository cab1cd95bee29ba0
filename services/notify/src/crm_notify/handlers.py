"""Use cases: triggers -> notifications (queued, deferred, awaiting the customer's registration,
or suppressed), the release of those awaiting when the registration comes, and the care, digest
and awaiting sweeps. The delivery worker that sends them is `delivery.py`; the HTTP commands
`commands.py`.

Plain async functions over the `NotifyRepository` port: unit tests use an in-memory one.
"""

import copy
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from crm_contracts import CloudEvent, event_key, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_contracts.relations import v1 as relations_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_contracts.topics import NOTIFY
from crm_notify.domain.digest import Digest, day_closes
from crm_notify.domain.notification import Intent, Notification, cancel_unwanted
from crm_notify.domain.policy import (
    Decision,
    NotifyRules,
    Preferences,
    Purpose,
    decide,
    zone_named,
    zone_of,
)
from crm_notify.domain.staff import NO_STAFF_ADDRESS, supervisors
from crm_notify.domain.triggers import intents_for, update_preferences
from crm_notify.ports import Changes, NotifyRepository, Staff
from crm_runtime.errors import ConcurrencyConflictError, is_transient
from crm_runtime.outbox import OutboundMessage
from crm_runtime.privacy import erasure_confirmation

log = logging.getLogger(__name__)

SOURCE = "crm/notify"
DIGEST_REDOS = 3
"""How often one digest sweep run reads and makes a page again after points were added to its
digests while it made them."""

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
    relations_v1.TASKS_DIGEST_DUE,
    relations_v1.TASK_OVERDUE,
    relations_v1.AGREEMENT_FULFILMENT_AT_RISK,
    relations_v1.AGREEMENT_PERIOD_CLOSED,
    relations_v1.AGREEMENT_RENEWAL_DUE,
)


@dataclass(frozen=True)
class Applied:
    """What a batch did: the events it applied, and the notifications it decided that are due
    now (queued for this moment), for the delivery worker to send right after the commit."""

    events: int
    due: list[str] = field(default_factory=list)


async def apply_events(
    events: Sequence[CloudEvent[Any]],
    repository: NotifyRepository,
    *,
    rules: NotifyRules,
    staff: Staff,
    now: datetime,
) -> Applied:
    fresh = await repository.unprocessed(events)
    if not fresh:
        return Applied(0)
    changes = Changes(applied=fresh)
    earners = _only_earning(fresh)
    subjects = sorted({e.subject for e in fresh} - earners)
    found = await repository.preferences(subjects) if subjects else {}
    everyone = {s: found.get(s) or Preferences(s) for s in subjects}
    zones = await repository.time_zones(sorted(earners)) if earners else {}
    bosses = supervisors(staff.people)
    known = await _existing(repository, [i for e in fresh for i in intents_for(e, bosses)])
    withdrawn: set[str] = set()
    registering: set[str] = set()
    for event in fresh:
        if isinstance(event.data, loyalty_v1.PointsEarned):
            held = everyone.get(event.subject)  # read already for its other events
            zone = zone_of(held) if held else zone_named(zones.get(event.subject))
            if not _add_to_digest(changes, zone, event, rules, now):
                changes.unmarked.add(event_key(event))  # nothing to add, now or later
            continue
        preferences = everyone[event.subject]
        if event.type in members_v1.EVENTS:  # written only when the member system spoke
            changes.preferences[preferences.customer_id] = preferences
        was_registered = preferences.registered
        update_preferences(preferences, event)
        if isinstance(event.data, members_v1.CustomerConsentChanged) and not event.data.granted:
            withdrawn.add(preferences.customer_id)
        if isinstance(event.data, members_v1.CustomerErasureRequested):
            changes.erased.append(preferences.customer_id)
            changes.outbound.append(erasure_confirmation("notify", event, now, KEPT_AFTER_ERASURE))
        if isinstance(event.data, members_v1.CustomerRegistered) and was_registered:
            continue  # registered again (another source): one welcome per customer
        if preferences.registered and not was_registered:
            registering.add(preferences.customer_id)
        for intent in intents_for(event, bosses):
            await _notify(changes, known, repository, preferences, intent, rules, staff, now)
    if registering:
        await _release_registered(changes, repository, everyone, registering, rules, now)
    if withdrawn:
        await cancel_withdrawn(changes, repository, sorted(withdrawn), now)
    await repository.save(changes)
    due = [
        n.notification_id
        for n in [*changes.notifications, *changes.released]
        if n.status == "queued" and n.next_attempt_at is not None and n.next_attempt_at <= now
    ]
    return Applied(len(fresh), due)


async def _release_registered(
    changes: Changes,
    repository: NotifyRepository,
    preferences: Mapping[str, Preferences],
    customer_ids: set[str],
    rules: NotifyRules,
    now: datetime,
) -> None:
    """The customers registered in this batch: their messages that awaited the registration
    (stored, or made earlier in this batch) are decided now, with what it told."""
    stored = await repository.awaiting(sorted(customer_ids))
    made = [n for n in changes.notifications if n.awaiting and n.customer_id in customer_ids]
    changes.released += stored
    await _release(changes, repository, preferences, [*stored, *made], rules, now)


async def _release(
    changes: Changes,
    repository: NotifyRepository,
    preferences: Mapping[str, Preferences],
    notifications: Sequence[Notification],
    rules: NotifyRules,
    now: datetime,
) -> None:
    """Decide messages that awaited their customer's registration, no longer awaiting: the
    customer registered, or the wait is over (then, still unknown, `unknown_customer`). A
    release long after its cause (a notify down for days) finds it `stale`."""
    for notification in notifications:
        known = preferences.get(notification.customer_id) or Preferences(notification.customer_id)
        decision = await _decision(
            changes,
            repository,
            known,
            notification.purpose,
            rules,
            now,
            may_await=False,
            occurred_at=notification.occurred_at,
        )
        notification.release(decision, known, now)
        if notification.status == "suppressed":
            changes.outbound.append(outcome(notification, now))


async def awaiting_sweep(now: datetime, repository: NotifyRepository, *, rules: NotifyRules) -> int:
    """Messages whose wait for their customer's registration is over by `now`: decided with what
    is known then, suppressed as `unknown_customer` unless the customer registered meanwhile (a
    registration applied while the message was being made, by another replica); the number
    decided. A page that cannot be decided for a reason of its own (not the database down) is
    done again one message at a time, and a message that fails alone is skipped (logged), so
    one bad record does not hold up the others."""

    async def decide_over(page: Sequence[Notification]) -> list[Notification]:
        over = copy.deepcopy(list(page))  # a failed try leaves its copies decided, unsaved
        changes = Changes(released=over)
        found = await repository.preferences(sorted({n.customer_id for n in over}))
        await _release(changes, repository, found, over, rules, now)
        await repository.save(changes)
        return over

    decided = 0
    while True:
        page = await repository.awaiting_over(now, 200)
        if not page:
            return decided
        done = await each_alone_on_failure(page, decide_over, skipped)
        decided += len(done)
        if len(done) < len(page):
            return decided  # what failed alone waits for the next run


T = TypeVar("T")
R = TypeVar("R")


async def each_alone_on_failure(
    items: Sequence[T],
    attempt: Callable[[Sequence[T]], Awaitable[list[R]]],
    failed: Callable[[T, Exception], None],
) -> list[R]:
    """`attempt(items)` together; should that fail for a reason of its own (not the database
    down: raised, the next run tries again), `attempt([item])` for each in turn, so that one
    bad item fails alone (`failed`) and the others go on. What the attempts returned."""
    try:
        return await attempt(items)
    except Exception as exc:
        if is_transient(exc):
            raise
    done: list[R] = []
    for item in items:
        try:
            done += await attempt([item])
        except Exception as exc:
            if is_transient(exc):
                raise
            failed(item, exc)
    return done


def skipped(notification: Notification, exc: Exception) -> None:
    log.error(
        "notification skipped",
        exc_info=exc,
        extra={"notification": notification.notification_id, "error": type(exc).__name__},
    )


async def cancel_withdrawn(
    changes: Changes, repository: NotifyRepository, customer_ids: Sequence[str], now: datetime
) -> None:
    """A consent withdrawn or a channel opted out cancels the customers' waiting messages that
    their preferences in `changes` no longer allow: the stored ones and the ones this change
    set has just made (a message decided in the same batch, before the withdrawal)."""
    stored = await repository.waiting(customer_ids)
    for customer_id in customer_ids:
        preferences = changes.preferences[customer_id]
        mine = [n for n in stored if n.customer_id == customer_id]
        changes.cancelled += cancel_unwanted(mine, preferences, now)
        made = [n for n in changes.notifications if n.customer_id == customer_id]
        cancel_unwanted(made, preferences, now)  # saved as new, cancelled from the start
        changes.outbound += [outcome(n, now) for n in [*mine, *made] if n.status == "cancelled"]


async def _existing(repository: NotifyRepository, intents: Sequence[Intent]) -> set[str]:
    """Which of the messages `intents` ask for exist already (the same trigger again)."""
    ids = [i.notification_id for i in intents]
    return await repository.existing(ids) if ids else set()


def _only_earning(events: Sequence[CloudEvent[Any]]) -> set[str]:
    """The customers whose events in the batch are all `points.earned`: nothing is decided for
    them until the digest sweep, so only their time zone is read (the day the points count
    for), not their sealed preferences and data keys."""
    earning = {e.subject for e in events if isinstance(e.data, loyalty_v1.PointsEarned)}
    return earning - {e.subject for e in events if not isinstance(e.data, loyalty_v1.PointsEarned)}


def _add_to_digest(
    changes: Changes, zone: ZoneInfo, event: CloudEvent[Any], rules: NotifyRules, now: datetime
) -> bool:
    """Add an order's points to what the batch adds to the digest of the customer's local day
    the points were earned (`zone`): one addition per customer and day, however many orders.
    When the addition makes the stored digest, it records when that day closes in `zone` (the
    sweep waits for it) and this event's id (`Digest.opened_by`). Points of a day closed longer
    ago than `max_age_s` are left out: that day's digest would be stale (ADR 0023).

    Returns whether it added anything. What it leaves out it would leave out whenever the event
    came again (points not for an order, or a day that only grows older), so such an event
    needs no inbox mark (ADR 0025)."""
    data: loyalty_v1.PointsEarned = event.data
    if data.reason != "order" or data.points <= 0:
        return False
    day = event.time.astimezone(zone).date()
    closes = day_closes(day, zone)
    if rules.is_stale(closes, now):
        return False
    added = changes.digests.setdefault(
        f"{event.subject}/{day.isoformat()}",
        Digest(event.subject, day, closes_at=closes, opened_by=event.id),
    )
    added.points += data.points
    added.orders += 1
    added.balance = data.balance
    return True


async def _notify(
    changes: Changes,
    known: set[str],
    repository: NotifyRepository,
    preferences: Preferences,
    intent: Intent,
    rules: NotifyRules,
    staff: Staff,
    now: datetime,
) -> None:
    """Decide and make one message, unless it exists (the same trigger again: one message).
    `known`: the ids that exist already (fetched by the caller) or were made in `changes`."""
    notification_id = intent.notification_id
    if notification_id in known:
        return
    if intent.recipient is not None:
        _notify_person(changes, preferences, intent, staff, now)
        known.add(notification_id)
        return
    if intent.purpose == "staff":
        decision = (
            Decision("send", "webhook", send_at=now)
            if staff.address
            else Decision("suppress", "webhook", reason="no staff webhook configured")
        )
    else:
        # The member system spoke of the customer in this batch (an erasure, say): known.
        spoken_of = preferences.customer_id in changes.preferences
        decision = await _decision(
            changes,
            repository,
            preferences,
            intent.purpose,
            rules,
            now,
            may_await=not spoken_of,
            occurred_at=intent.occurred_at,
        )
    notification = Notification.create(
        preferences.customer_id, intent, decision, preferences, now, staff_address=staff.address
    )
    changes.notifications.append(notification)
    known.add(notification_id)
    if notification.status == "suppressed":
        changes.outbound.append(outcome(notification, now))


async def _decision(
    changes: Changes,
    repository: NotifyRepository,
    preferences: Preferences,
    purpose: Purpose,
    rules: NotifyRules,
    now: datetime,
    *,
    may_await: bool = True,
    occurred_at: datetime | None = None,
) -> Decision:
    """`decide` for a customer message, with the messages counted towards the daily cap: the
    stored ones of the customer's local day and those this change set makes or releases (the
    store counts none that awaits the registration). Of those in `changes`, what still awaits
    or was suppressed does not count. The count is read only when it can change the decision:
    not for a transactional message (no cap), nor for one that is stale, awaits its customer's
    registration or has no channel the customer allows."""
    uncounted = decide(
        preferences, purpose, now, 0, rules, may_await=may_await, occurred_at=occurred_at
    )
    if purpose == "transactional" or uncounted.action not in ("send", "defer"):
        return uncounted  # stale, awaited or refused before the cap: no count to read
    zone = zone_of(preferences)
    midnight = datetime.combine(now.astimezone(zone).date(), time(0), tzinfo=zone)
    counted = await repository.counted_since(preferences.customer_id, midnight)
    counted += sum(
        1
        for n in [*changes.notifications, *changes.released]
        if n.customer_id == preferences.customer_id
        and n.purpose == "marketing"  # as stored ones are counted: staff messages are not
        and n.status != "suppressed"
        and not n.awaiting
    )
    return decide(preferences, purpose, now, counted, rules, may_await=may_await)


def _notify_person(
    changes: Changes, preferences: Preferences, intent: Intent, staff: Staff, now: datetime
) -> None:
    """A message for a person of ours, by e-mail from the address book, in their locale: no
    customer consent or quiet hours (it is their work); without an address it is recorded
    `suppressed` (`staff:no_address`) and announced, never an error."""
    recipient = intent.recipient or ""
    member = staff.people.get(recipient)
    address = member.email if member else None
    decision = (
        Decision("send", "email", send_at=now)
        if address
        else Decision("suppress", "email", reason=f"{NO_STAFF_ADDRESS} ({recipient[:64]})")
    )
    variables = {**intent.variables, "name": (member.name if member else None) or recipient}
    notification = Notification.create(
        preferences.customer_id,
        replace(intent, variables=variables),
        decision,
        None,
        now,
        staff_address=address,
        locale=member.locale if member else None,
    )
    changes.notifications.append(notification)
    if notification.status == "suppressed":
        changes.outbound.append(outcome(notification, now))


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
    elif notification.status == "cancelled":
        event_type = notify_v1.NOTIFICATION_CANCELLED
        reason = notification.history[-1].reason or "cancelled"
        data = notify_v1.NotificationCancelled(**base, reason=reason[:500])
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
    changes = Changes()
    today = now.astimezone(ZoneInfo(zone_name)).date()
    celebrated = await repository.with_birthday(today.month, today.day)
    greetings = [
        (p, Intent("birthday", "marketing", f"birthday/{p.customer_id}/{today.year}"))
        for p in celebrated
    ]
    known: set[str] = set()
    await _notify_each(changes, known, repository, greetings, rules, now)
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
            await _notify_each(changes, known, repository, wishes, rules, now)
            after = page[-1].customer_id
    made = len(changes.notifications)
    if made:
        await repository.save(changes)
    return made


async def digest_sweep(now: datetime, repository: NotifyRepository, *, rules: NotifyRules) -> int:
    """Points digests whose local day has closed by `now` (in the customer's time zone) become
    one message each; in the same transaction the digests are deleted, if still as read (points
    added meanwhile make it a conflict: the sweep is redone), so a digest becomes exactly one
    message and points added after the sweep make a new digest. That one, for a day whose
    message exists (late points), is a later part with its own id (`Digest.cause`): sent,
    not dropped. A page whose digests changed while it was made is read and made again (up to
    `DIGEST_REDOS` times in a run; then the conflict ends the run, the next one resumes)."""
    made = 0
    redone = 0
    while True:
        digests = await repository.digests_closed(now, 200)
        if not digests:
            return made
        changes = Changes(sent_digests=digests)
        firsts = [_digest_intent(d, day_sent=False) for d in digests]
        sent = await repository.existing([i.notification_id for i in firsts])
        found = await repository.preferences(sorted({d.customer_id for d in digests}))
        summaries = [
            (
                found.get(d.customer_id) or Preferences(d.customer_id),
                _digest_intent(d, day_sent=True) if first.notification_id in sent else first,
            )
            for d, first in zip(digests, firsts, strict=True)
        ]
        await _notify_each(changes, set(), repository, summaries, rules, now)
        try:
            await repository.save(changes)
        except ConcurrencyConflictError:
            redone += 1
            if redone > DIGEST_REDOS:
                raise
            continue
        made += len(digests)


async def _notify_each(
    changes: Changes,
    known: set[str],
    repository: NotifyRepository,
    messages: Sequence[tuple[Preferences, Intent]],
    rules: NotifyRules,
    now: datetime,
) -> None:
    """The sweeps' customer messages: `_notify` each, after fetching which exist already."""
    known |= await _existing(repository, [intent for _, intent in messages])
    for preferences, intent in messages:
        await _notify(changes, known, repository, preferences, intent, rules, Staff(None), now)


def _digest_intent(digest: Digest, *, day_sent: bool) -> Intent:
    return Intent(
        "points_digest",
        "transactional",
        digest.cause(day_sent),
        occurred_at=digest.closes,
        variables={
            "points": digest.points,
            "orders": digest.orders,
            "balance": digest.balance,
            "day": digest.day.isoformat(),
        },
    )
