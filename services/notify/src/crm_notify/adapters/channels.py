"""Channels: email over SMTP, SMS through an HTTP provider, staff webhooks signed with HMAC.

Each channel has a primary provider and an optional secondary one; after `threshold`
consecutive failures of the primary the secondary takes over for `cooldown_s`, then the primary
is tried again. The message id is the notification id (`Message-ID` for email, `id` for SMS and
webhooks) so a provider or a receiver can recognise a repeat.
"""

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib
import httpx

from crm_notify.domain.notification import Notification
from crm_notify.handlers import DeliveryError

log = logging.getLogger(__name__)
Send = Callable[[Notification], Awaitable[None]]


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout_s: float = 10.0

    @property
    def name(self) -> str:
        return f"smtp://{self.host}:{self.port}"


class Failover:
    """Primary first; the secondary after repeated primary failures, for a while."""

    def __init__(
        self,
        primary: tuple[str, Send],
        secondary: tuple[str, Send] | None,
        *,
        threshold: int = 3,
        cooldown_s: float = 60.0,
    ) -> None:
        self.primary, self.secondary = primary, secondary
        self.threshold, self.cooldown_s = threshold, cooldown_s
        self.failures = 0
        self.until = 0.0

    async def send(self, notification: Notification) -> str:
        use_secondary = self.secondary is not None and time.monotonic() < self.until
        name, send = self.secondary if use_secondary and self.secondary else self.primary
        try:
            await send(notification)
        except DeliveryError:
            if not use_secondary:
                self.failures += 1
                if self.secondary is not None and self.failures >= self.threshold:
                    log.warning("primary provider failing: switching", extra={"provider": name})
                    self.until = time.monotonic() + self.cooldown_s
                    self.failures = 0
            raise
        if not use_secondary:
            self.failures = 0
        return name


def smtp_sender(server: SmtpServer, sender: str) -> Send:
    async def send(notification: Notification) -> None:
        if not notification.to:
            raise DeliveryError("no address", permanent=True)
        message = EmailMessage()
        message["From"] = sender
        message["To"] = notification.to
        message["Subject"] = notification.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = f"<{notification.notification_id}@crm.notify>"
        message.set_content(notification.body, charset="utf-8")
        try:
            await aiosmtplib.send(
                message,
                hostname=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                start_tls=server.starttls,
                timeout=server.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError("recipient refused", permanent=True) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {server.name}: {type(exc).__name__}") from exc

    return send


def http_sender(url: str, token: str | None, *, timeout_s: float = 10.0) -> Send:
    """An SMS provider's HTTP API: POST {id, to, text}; any 2xx is accepted."""

    async def send(notification: Notification) -> None:
        if not notification.to:
            raise DeliveryError("no phone number", permanent=True)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {
            "id": notification.notification_id,
            "to": notification.to,
            "text": notification.body,
        }
        await _post(url, body, headers, timeout_s)

    return send


def webhook_sender(url: str, secret: str, *, timeout_s: float = 10.0) -> Send:
    """Staff webhooks: `X-CRM-Signature: sha256=<hex HMAC of timestamp.body>`."""

    async def send(notification: Notification) -> None:
        payload = {
            "id": notification.notification_id,
            "template": notification.template,
            "subject": notification.subject,
            "text": notification.body,
            "customer_id": notification.customer_id,
        }
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-CRM-Timestamp": stamp,
            "X-CRM-Signature": sign(secret, stamp, raw.encode()),
        }
        await _post(notification.to or url, raw, headers, timeout_s)

    return send


def sign(secret: str, stamp: str, raw: bytes) -> str:
    """What a receiver computes to check `X-CRM-Signature`."""
    return (
        "sha256="
        + hmac.new(secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    )


async def _post(url: str, body: object, headers: dict[str, str], timeout_s: float) -> None:
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            if isinstance(body, str):
                response = await client.post(url, content=body.encode(), headers=headers)
            else:
                response = await client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{url}: {type(exc).__name__}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise DeliveryError(f"{url}: HTTP {response.status_code}")
    if response.status_code >= 400:
        raise DeliveryError(f"{url}: HTTP {response.status_code}", permanent=True)


class ChannelSenders:
    """Routes a notification to its channel's failover pair."""

    def __init__(self, channels: dict[str, Failover]) -> None:
        self.channels = channels

    async def send(self, notification: Notification) -> str:
        channel = self.channels.get(notification.channel or "")
        if channel is None:
            raise DeliveryError(f"channel {notification.channel} is not configured", permanent=True)
        return await channel.send(notification)
