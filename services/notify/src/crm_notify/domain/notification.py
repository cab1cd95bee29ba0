"""A notification and its status history; the triggers that ask for one.

Pure code. A notification's id derives from (cause, template): the same trigger delivered twice
can only ever make one message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crm_notify.domain.policy import Channel, Decision, Preferences, Purpose, Status
from crm_notify.domain.templates import render


@dataclass(frozen=True)
class Intent:
    """A message a trigger asks for: which template, why, with which variables."""

    template: str
    purpose: Purpose
    cause: str
    variables: dict[str, Any] = field(default_factory=dict)
    trace: str | None = None
    """The cause's W3C trace context: the message's events continue its trace."""


@dataclass
class StatusChange:
    at: datetime
    status: Status
    reason: str | None = None


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
    version: int = 0

    @staticmethod
    def id_for(cause: str, template: str) -> str:
        return "N-" + uuid.uuid5(uuid.NAMESPACE_URL, f"{cause}/{template}").hex[:16]

    @staticmethod
    def create(
        customer_id: str,
        intent: Intent,
        decision: Decision,
        preferences: Preferences | None,
        now: datetime,
        *,
        staff_address: str | None = None,
    ) -> Notification:
        """Render now (a missing variable raises `RenderError`: the trigger goes to the DLQ)."""
        locale = preferences.locale if preferences else "zh-CN"
        variables = {**intent.variables}
        if intent.purpose != "staff":
            variables.setdefault("name", (preferences.name if preferences else None) or "")
        rendered = render(intent.template, locale, variables)
        notification = Notification(
            notification_id=Notification.id_for(intent.cause, intent.template),
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
        )
        if decision.action == "suppress":
            notification._move(now, "suppressed", decision.reason)
            notification.subject = notification.body = ""
            return notification
        if intent.purpose == "staff":
            notification.to = staff_address
        elif preferences is not None and decision.channel is not None:
            notification.to = preferences.address(decision.channel)
        notification.next_attempt_at = decision.send_at or now
        if decision.action == "defer":
            notification._move(now, "deferred", decision.reason)
        else:
            notification._move(now, "queued")
        return notification

    def sent(self, at: datetime, provider: str) -> None:
        self.attempts += 1
        self.provider = provider
        self.next_attempt_at = None
        self._move(at, "sent", f"via {provider}")

    def attempt_failed(self, at: datetime, reason: str, retry_at: datetime | None) -> None:
        """A failed attempt: queued again for `retry_at`, or failed for good when None."""
        self.attempts += 1
        if retry_at is None:
            self.next_attempt_at = None
            self._move(at, "failed", reason)
        else:
            self.next_attempt_at = retry_at
            self._move(at, "queued", f"retry {self.attempts}: {reason}")

    def redact(self) -> None:
        """Erasure: keep that a message existed and its history, not what it said or where."""
        self.to, self.subject, self.body = None, "", ""

    def _move(self, at: datetime, status: Status, reason: str | None = None) -> None:
        self.status = status
        self.history.append(StatusChange(at, status, reason))
