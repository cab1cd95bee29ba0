"""A notification and its status history; the triggers that ask for one.

Pure code. A notification's id derives from (cause, template): the same trigger delivered twice
can only ever make one message. A delivery run claims a notification (status `sending`, a
`Claim`) before it sends it, so no other run sends it meanwhile. A message for a customer not yet
registered waits for the registration (`deferred`, `awaiting_until`) and is then `released`:
decided and rendered again with what the registration told.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crm_notify.domain.policy import Channel, Decision, Preferences, Purpose, Status
from crm_notify.domain.templates import NAME_LIMIT, Rendered, RenderError, one_line, render


@dataclass(frozen=True)
class Intent:
    """A message a trigger asks for: which template, why, with which variables."""

    template: str
    purpose: Purpose
    cause: str
    variables: dict[str, Any] = field(default_factory=dict)
    trace: str | None = None
    """The cause's W3C trace context: the message's events continue its trace."""
    origin: str = ""
    """The cause event's `source`, when an event caused it: `cause` (its id) is unique only
    with it, so the message's id is derived from both."""
    recipient: str | None = None
    """A staff message for a person: their user id (the address book, `CRM_NOTIFY_STAFF`).
    One cause may ask for one message per recipient (each supervisor)."""
    occurred_at: datetime | None = None
    """When its cause happened (the cause event's `time`; a digest's: its day's close): a
    customer message about what is long past is not sent (`NotifyRules.max_age_s`)."""

    @property
    def notification_id(self) -> str:
        template = f"{self.template}/{self.recipient}" if self.recipient else self.template
        return Notification.id_for(self.cause, template, self.origin)


@dataclass
class StatusChange:
    at: datetime
    status: Status
    reason: str | None = None


@dataclass(frozen=True)
class Claim:
    """A delivery run's hold on a notification while it sends it (status `sending`)."""

    token: str
    until: datetime
    """When the claim lapses: a run that holds it longer has stopped (killed, or hung)."""
    handed_over_to: str | None = None
    """The provider that has the whole message, awaiting only its reply (SMTP: the end of DATA
    was written). A lapsed claim with it is not sent again; without it, it is."""


@dataclass
class Notification:
    notification_id: str
    customer_id: str
    template: str
    purpose: Purpose
    cause: str
    created_at: datetime
    locale: str = "zh-CN"
    channel: Channel | None = None
    to: str | None = None
    subject: str = ""
    body: str = ""
    status: Status = "queued"
    history: list[StatusChange] = field(default_factory=list)
    attempts: int = 0
    next_attempt_at: datetime | None = None
    provider: str | None = None
    trace: str | None = None
    claim: Claim | None = None
    awaiting_until: datetime | None = None
    """While it awaits its customer's registration: when it stops waiting (then suppressed
    as `unknown_customer` unless the customer registered)."""
    variables: dict[str, Any] | None = None
    """While it awaits: its trigger's variables (ids and figures, no personal data), to render
    it again in the customer's locale and with their name."""
    occurred_at: datetime | None = None
    """When its cause happened (`Intent.occurred_at`): a release long after, or a send long
    after (a notify down for days), finds it stale as the first decision would have (ADR 0023).
    None: not aged (care greetings, expiry notices, staff messages, messages stored before)."""
    version: int = 0

    @staticmethod
    def id_for(cause: str, template: str, origin: str = "") -> str:
        name = f"{len(origin)}:{origin}/{cause}/{template}" if origin else f"{cause}/{template}"
        return "N-" + uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:16]

    @staticmethod
    def create(
        customer_id: str,
        intent: Intent,
        decision: Decision,
        preferences: Preferences | None,
        now: datetime,
        *,
        staff_address: str | None = None,
        locale: str | None = None,
    ) -> Notification:
        """Render now (a missing variable raises `RenderError`: the trigger goes to the DLQ).
        `locale`: a staff member's (else the customer's preferences')."""
        locale = locale or (preferences.locale if preferences else "zh-CN")
        rendered = _render(intent.template, intent.purpose, locale, intent.variables, preferences)
        notification = Notification(
            notification_id=intent.notification_id,
            customer_id=customer_id,
            template=intent.template,
            purpose=intent.purpose,
            cause=intent.cause,
            created_at=now,
            locale=locale,
            channel=decision.channel,
            subject=rendered.subject,
            body=rendered.body,
            trace=intent.trace,
            occurred_at=intent.occurred_at,
        )
        if decision.action == "suppress":
            notification._suppressed(now, decision.reason)
            return notification
        if decision.action == "await":  # rendered above only to find a bad trigger now
            notification.awaiting_until = decision.send_at or now
            notification.variables = dict(intent.variables)
            notification.subject = notification.body = ""
            notification._move(now, "deferred", decision.reason)
            return notification
        if intent.purpose == "staff":
            notification.to = staff_address
        elif preferences is not None and decision.channel is not None:
            notification.to = preferences.address(decision.channel)
        notification._decided(decision, now)
        return notification

    @property
    def awaiting(self) -> bool:
        """Deferred until its customer registers (or its wait ends)."""
        return self.status == "deferred" and self.awaiting_until is not None

    def release(self, decision: Decision, preferences: Preferences, now: datetime) -> None:
        """It awaited its customer's registration: now decided (`decision`) and, unless
        suppressed, rendered again in the customer's locale with their name. Should their locale
        not render it, it is suppressed with the reason: never an error for the registration
        that released it."""
        variables, self.variables, self.awaiting_until = self.variables or {}, None, None
        self.channel = decision.channel
        if decision.action == "suppress":
            self._suppressed(now, decision.reason)
            return
        locale = preferences.locale
        try:
            rendered = _render(self.template, self.purpose, locale, variables, preferences)
        except RenderError as error:
            self._suppressed(now, f"not rendered in {locale}: {error}"[:500])
            return
        self.locale, self.subject, self.body = locale, rendered.subject, rendered.body
        if decision.channel is not None:
            self.to = preferences.address(decision.channel)
        self._decided(decision, now)

    def _decided(self, decision: Decision, now: datetime) -> None:
        self.next_attempt_at = decision.send_at or now
        if decision.action == "defer":
            self._move(now, "deferred", decision.reason)
        else:
            self._move(now, "queued")

    def _suppressed(self, now: datetime, reason: str | None) -> None:
        self.subject = self.body = ""
        self._move(now, "suppressed", reason)

    def claimed(self, claim: Claim) -> None:
        """A run holds it while sending (not in the history: the outcome is)."""
        self.status = "sending"
        self.claim = claim

    def sent(self, at: datetime, provider: str, *, unconfirmed: bool = False) -> None:
        """Sent; `unconfirmed`: the provider had the whole message when the run that sent it
        stopped, before the provider's reply (so it is not sent again)."""
        self.attempts += 1
        self.provider = provider
        self.next_attempt_at = None
        self.claim = None
        reason = f"via {provider}"
        if unconfirmed:
            reason += " (unconfirmed: notify stopped after handing it over, before the reply)"
        self._move(at, "sent", reason)

    def attempt_failed(self, at: datetime, reason: str, retry_at: datetime | None) -> None:
        """A failed attempt: queued again for `retry_at`, or failed for good when None."""
        self.attempts += 1
        self.claim = None
        if retry_at is None:
            self.next_attempt_at = None
            self._move(at, "failed", reason)
        else:
            self.next_attempt_at = retry_at
            self._move(at, "queued", f"retry {self.attempts}: {reason}")

    @property
    def waiting(self) -> bool:
        """Decided, not yet sent or given up: what a withdrawal can still cancel."""
        return self.status in ("queued", "deferred")

    def cancel(self, at: datetime, reason: str) -> None:
        """Not sent after all: the customer withdrew consent or opted out since it was decided
        (or is erased). Final, like `sent` and `failed`."""
        self.next_attempt_at = None
        self.claim = None
        self._move(at, "cancelled", reason)

    def defer(self, at: datetime, until: datetime, reason: str) -> None:
        """Found inside quiet hours right before the send: waits (unclaimed) until `until`."""
        self.next_attempt_at = until
        self.claim = None
        self._move(at, "deferred", reason)

    def redact(self) -> None:
        """Erasure: keep that a message existed and its history, not what it said or where."""
        self.to, self.subject, self.body, self.variables = None, "", "", None

    def _move(self, at: datetime, status: Status, reason: str | None = None) -> None:
        self.status = status
        self.history.append(StatusChange(at, status, reason))


def _render(
    template: str,
    purpose: Purpose,
    locale: str,
    variables: dict[str, Any],
    preferences: Preferences | None,
) -> Rendered:
    """A customer message gets the customer's name (one line, at most `NAME_LIMIT`)."""
    variables = {**variables}
    if purpose != "staff":
        name = (preferences.name if preferences else None) or ""
        variables.setdefault("name", one_line(name, NAME_LIMIT))
    return render(template, locale, variables)


def cancel_unwanted(
    waiting: Sequence[Notification], preferences: Preferences, at: datetime
) -> list[Notification]:
    """Cancel the customer's waiting messages that `preferences` no longer allow on their
    channel (a consent withdrawn, a channel opted out): a withdrawal reaches what is queued or
    deferred (say to 09:00 by quiet hours) at once, not only what is decided after it.
    Returns the ones cancelled."""
    cancelled = []
    for notification in waiting:
        channel = notification.channel
        if not notification.waiting or channel is None or notification.purpose == "staff":
            continue
        refused = preferences.refusal(channel, notification.purpose)
        if refused is not None:
            notification.cancel(at, refused)
            cancelled.append(notification)
    return cancelled
