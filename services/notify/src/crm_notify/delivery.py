"""The delivery worker: send what is due, in groups of ten — claim them, check the customers'
preferences again, send each in turn, save the outcomes — with retries, a timeout per send, and
provider failover (in the senders). `deliver` is the periodic sweep; `SendNow` sends what a
consumer batch decided right after that batch committed (`deliver_ids`), through the same steps.

A claim (status `sending`, a token and a lapse time) keeps other runs off a notification while
it is sent; the outcome is saved under the claim (`NotifyRepository.save_delivery`), so a run
whose claim was taken over changes nothing. Plain async functions over the `NotifyRepository`
and `Senders` ports: unit tests use in-memory ones.
"""

import asyncio
import functools
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta

from crm_notify.domain.notification import Claim, Notification
from crm_notify.domain.policy import NotifyRules, Preferences, recheck
from crm_notify.handlers import each_alone_on_failure, outcome, skipped
from crm_notify.ports import DeliveryError, NotifyRepository, Senders
from crm_runtime.errors import ConcurrencyConflictError, is_transient
from crm_runtime.outbox import OutboundMessage
from crm_runtime.sweeps import Clock, utc_now

log = logging.getLogger(__name__)


async def deliver(
    now: datetime,
    repository: NotifyRepository,
    senders: Senders,
    *,
    rules: NotifyRules,
    batch: int = 100,
    rounds: int = 20,
    send_timeout_s: float = 30.0,
    clock: Clock = utc_now,
) -> int:
    """Send what is due, in groups (`GROUP`): claim them, send each, save the outcomes.

    A run reads `batch` due messages at a time and reads again while a read comes back full, up
    to `rounds` reads: a backlog (a burst of registrations, more than `SendNow` was handed)
    drains at the speed of the sends, not one batch per sweep interval.

    A failure is retried with exponential backoff up to `max_attempts`. Whatever goes wrong with
    one message fails that message (for good unless the error is transient) and the run goes on
    with the next; only a transient fault outside a send (the database down) ends the run.
    A send is abandoned after `send_timeout_s`; a claim lasts twice that (`clock`: real time,
    not the business clock `now`), so a claim that lapses belongs to a run that stopped.
    """
    sent = 0
    for _ in range(rounds):
        due = await repository.due(now, clock(), batch)
        sent += await _deliver_each(due, now, repository, senders, rules, send_timeout_s, clock)
        if len(due) < batch:
            break
    return sent


async def deliver_ids(
    notification_ids: Sequence[str],
    now: datetime,
    repository: NotifyRepository,
    senders: Senders,
    *,
    rules: NotifyRules,
    send_timeout_s: float = 30.0,
    clock: Clock = utc_now,
) -> int:
    """Send these notifications now if they are still due (a batch just decided them): the same
    claim, re-check, send and save as `deliver`. One another run took first is skipped."""
    due = await repository.due_among(notification_ids, now)
    return await _deliver_each(due, now, repository, senders, rules, send_timeout_s, clock)


GROUP = 10
"""Notifications claimed, re-checked and saved together: one round trip each for the group
(a message alone cost four, docs/performance.md); each is still sent alone, under the claim."""


async def _deliver_each(
    due: Sequence[Notification],
    now: datetime,
    repository: NotifyRepository,
    senders: Senders,
    rules: NotifyRules,
    send_timeout_s: float,
    clock: Clock,
) -> int:
    sent = 0
    for start in range(0, len(due), GROUP):
        group = due[start : start + GROUP]
        sent += await _deliver_group(group, now, repository, senders, rules, send_timeout_s, clock)
    return sent


async def _deliver_group(
    group: Sequence[Notification],
    now: datetime,
    repository: NotifyRepository,
    senders: Senders,
    rules: NotifyRules,
    send_timeout_s: float,
    clock: Clock,
) -> int:
    """Claim the group, read its customers' preferences, send each message in turn, then save
    the outcomes in one transaction; the number sent.

    What goes wrong with one message fails that one alone: it is left out of the save (its claim
    lapses and a later run takes it up, as before). Should the group's claim, read or save fail
    for a reason of its own (not the database down), it is done again one message at a time,
    so that one message's or one customer's bad record does not hold up the other nine. A
    message whose turn comes when its claim has too little time left for a send is released
    unsent (saved as read, unclaimed) for the next run. When another run took one over
    meanwhile, the outcomes are saved one by one and that one is skipped."""
    lapsed = {n.notification_id: n.claim for n in group if n.status == "sending"}
    send_time = timedelta(seconds=send_timeout_s)
    claim = Claim(uuid.uuid4().hex, clock() + 2 * send_time)
    claimed = await _claim(group, claim, repository)
    customers = sorted({n.customer_id for n in claimed if n.purpose != "staff"})
    preferences, unreadable = await _standing(customers, repository)
    done = []
    for notification in claimed:
        if clock() + send_time > claim.until:
            done.append(notification)  # released as read
            continue
        try:
            if notification.purpose != "staff" and notification.customer_id in unreadable:
                raise unreadable[notification.customer_id]
            await _deliver_one(
                notification,
                lapsed.get(notification.notification_id),
                claim,
                now,
                preferences,
                repository,
                senders,
                rules,
                send_timeout_s,
            )
        except Exception as exc:
            if is_transient(exc):
                raise  # the database is down: the next run tries again
            skipped(notification, exc)
        else:
            done.append(notification)
    return await _save_outcomes(done, claim, now, repository)


async def _claim(
    group: Sequence[Notification], claim: Claim, repository: NotifyRepository
) -> list[Notification]:
    async def claim_all(part: Sequence[Notification]) -> list[Notification]:
        return await repository.claim_all(part, claim)

    return await each_alone_on_failure(group, claim_all, skipped)


async def _standing(
    customers: Sequence[str], repository: NotifyRepository
) -> tuple[dict[str, Preferences], dict[str, Exception]]:
    """The customers' preferences, and the error of each whose record could not be read."""
    if not customers:
        return {}, {}
    try:
        return await repository.standing(customers), {}
    except Exception as exc:
        if is_transient(exc):
            raise
    found: dict[str, Preferences] = {}
    unreadable: dict[str, Exception] = {}
    for customer_id in customers:
        try:
            found.update(await repository.standing([customer_id]))
        except Exception as exc:
            if is_transient(exc):
                raise
            unreadable[customer_id] = exc
    return found, unreadable


async def _deliver_one(
    notification: Notification,
    lapsed: Claim | None,
    claim: Claim,
    now: datetime,
    preferences: Mapping[str, Preferences],
    repository: NotifyRepository,
    senders: Senders,
    rules: NotifyRules,
    send_timeout_s: float,
) -> None:
    """Re-check and send one claimed notification; its outcome is applied to it."""
    notification.claimed(claim)
    if lapsed is not None and lapsed.handed_over_to:
        # The run that claimed it stopped after the provider had the whole message and before
        # its reply: sending again would make a second e-mail. It is recorded as sent,
        # unconfirmed (README "Delivery").
        notification.sent(now, lapsed.handed_over_to, unconfirmed=True)
        log.warning("delivery unconfirmed", extra={"notification": notification.notification_id})
    elif _still_wanted(notification, now, preferences, rules):
        await _send(notification, claim, now, repository, senders, rules, send_timeout_s)


async def _save_outcomes(
    done: Sequence[Notification], claim: Claim, now: datetime, repository: NotifyRepository
) -> int:
    def outbound(n: Notification) -> list[OutboundMessage]:
        return [outcome(n, now)] if n.status in ("sent", "failed", "cancelled") else []

    try:
        await repository.save_deliveries(done, claim, [m for n in done for m in outbound(n)])
        return sum(n.status == "sent" for n in done)
    except ConcurrencyConflictError:
        pass  # another run took one over: each is saved alone below
    except Exception as exc:
        if is_transient(exc):
            raise
    saved = []
    for notification in done:
        try:
            await repository.save_deliveries([notification], claim, outbound(notification))
        except ConcurrencyConflictError:
            log.warning("claim lost while sending", extra={"id": notification.notification_id})
        except Exception as exc:
            if is_transient(exc):
                raise
            skipped(notification, exc)
        else:
            saved.append(notification)
    return sum(n.status == "sent" for n in saved)


def _still_wanted(
    notification: Notification,
    now: datetime,
    preferences: Mapping[str, Preferences],
    rules: NotifyRules,
) -> bool:
    """Under the claim, right before the send: the customer's preferences as read after the
    claim (`standing`). A consent withdrawn or an opt-out since the decision cancels it; quiet
    hours defer marketing (README "Policy"). A withdrawal saved after that read is not seen: it
    cancels only what is still waiting."""
    found = preferences.get(notification.customer_id) if notification.purpose != "staff" else None
    decision = recheck(
        found,
        notification.purpose,
        notification.channel,
        now,
        rules,
        occurred_at=notification.occurred_at,
    )
    if decision.action == "cancel":
        notification.cancel(now, decision.reason or "cancelled")
        log.info("cancelled before the send", extra={"id": notification.notification_id})
        return False
    if decision.action == "defer" and decision.send_at is not None:
        notification.defer(now, decision.send_at, decision.reason or "deferred")
        return False
    return True


class SendNow:
    """The delivery worker's short way: the notifications a consumer batch decided are due now
    are handed over (`hand`) right after that batch committed and sent by `run` at once, not at
    the next `deliver` sweep. `run` keeps `workers` sends going at a time (each claims its
    message first, so no two send one message): one slow provider answer does not hold up the
    messages decided after it.

    Nothing rests on it: what it was handed is queued in the database, so what it does not get
    to (more than `limit` waiting, a restart, a failed run) the `deliver` sweep sends.
    """

    def __init__(
        self,
        send: Callable[[list[str]], Awaitable[int]],
        *,
        workers: int = 4,
        chunk: int = 10,
        limit: int = 10_000,
    ) -> None:
        self.send = send
        self.workers, self.chunk, self.limit = workers, chunk, limit
        self._ids: dict[str, None] = {}  # an ordered set: the oldest handed first
        self._handed = asyncio.Event()

    def hand(self, notification_ids: Sequence[str]) -> None:
        """Send these now; returns at once (the consumer does not wait for the sends)."""
        for notification_id in notification_ids:
            if len(self._ids) >= self.limit:
                break  # queued in the database: the sweep sends them
            self._ids[notification_id] = None
        if self._ids:
            self._handed.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self.workers)))

    async def _worker(self) -> None:
        while True:
            while not self._ids:  # no await between the check and the wait: no wake is lost
                self._handed.clear()
                await self._handed.wait()
            ids = list(itertools.islice(self._ids, self.chunk))
            for notification_id in ids:
                del self._ids[notification_id]
            try:
                await self.send(ids)
            except Exception as exc:  # the database down: the sweep sends them later
                log.warning(
                    "sending right after the decision failed; the deliver sweep will",
                    extra={"notifications": len(ids), "error": type(exc).__name__},
                )


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
