"""Channels: email over SMTP, SMS through an HTTP provider, staff webhooks signed with HMAC.

Each channel has a primary provider and an optional secondary one; after `threshold`
consecutive failures of the primary the secondary takes over for `cooldown_s`, then the primary
is tried again.

Every send carries a stable idempotency key, the notification id, the same on every attempt and
after a restart: `Message-ID: <N-…@crm.notify>` for email; for SMS and webhooks the
`Idempotency-Key` header and the body's `id`. Headers are built from one-line text (`one_line`):
a line break in a name or a subject cannot end a header or add one.
"""

import asyncio
import base64
import email.policy
import functools
import hashlib
import hmac
import json
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal

import aiosmtplib
import httpx
from aiosmtplib.typing import Default

from crm_notify.domain.notification import Notification
from crm_notify.domain.templates import SUBJECT_LIMIT, one_line
from crm_notify.ports import DeliveryError, HandedOver

log = logging.getLogger(__name__)
HandOver = Callable[[], Awaitable[None]]
"""Called by a sender once the provider has the whole message (see `ports.HandedOver`)."""
Send = Callable[[Notification, HandOver], Awaitable[None]]
ADDRESS_LIMIT = 320


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

    async def send(self, notification: Notification, handed_over: HandedOver) -> str:
        use_secondary = self.secondary is not None and time.monotonic() < self.until
        name, send = self.secondary if use_secondary and self.secondary else self.primary
        try:
            await send(notification, functools.partial(handed_over, name))
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


_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


async def _nothing() -> None:
    return None


class _HandOverSMTP(aiosmtplib.SMTP):
    """aiosmtplib's client, except that DATA reports the moment the whole message is written.

    The server delivers a message only once it has read the final "." line; a client that dies
    before writing it leaves nothing behind, one that dies after may have delivered it.
    `on_handed_over` runs (and is awaited) between writing that line and reading the reply, so
    a crash after it is known to have happened after the hand-over. The DATA exchange is
    aiosmtplib 5's own (`SMTPProtocol.execute_data_command`): dot-stuffing, CRLF, one reply.
    """

    def __init__(self, server: SmtpServer, local_hostname: str) -> None:
        super().__init__(
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            start_tls=server.starttls,
            timeout=server.timeout_s,
            local_hostname=local_hostname,
        )
        self.on_handed_over: HandOver = _nothing
        self.messages = 0
        """Messages this connection has sent."""
        self.idle_since = 0.0

    async def data(
        self,
        message: str | bytes,
        /,
        *,
        timeout: float | Literal[Default.token] | None = Default.token,  # noqa: ASYNC109 - the base's
    ) -> aiosmtplib.SMTPResponse:
        if timeout is Default.token:
            timeout = self.timeout
        if isinstance(message, str):
            message = message.encode("ascii")
        start = await self.execute_command(b"DATA", timeout=timeout)
        if start.code != aiosmtplib.SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = self.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        content = _LINE_ENDINGS.sub(b"\r\n", message)
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        protocol.write(_LEADING_PERIOD.sub(b"..", content) + b".\r\n")
        # Nothing awaited between the write and read_response(): the reply cannot be missed.
        recorded = asyncio.ensure_future(self.on_handed_over())
        try:
            reply = await protocol.read_response(timeout=timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()
            raise
        finally:
            await recorded
        if reply.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        return reply


def email_message(notification: Notification, sender: str) -> EmailMessage:
    """The e-mail built by the standard library; every header from one-line text (a stored
    subject may predate the rule). Used for an address that is not plain ASCII (`email_bytes`
    writes the others)."""
    message = EmailMessage()
    message["From"] = one_line(sender, ADDRESS_LIMIT)
    message["To"] = one_line(notification.to or "", ADDRESS_LIMIT)
    message["Subject"] = one_line(notification.subject, SUBJECT_LIMIT)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{notification.notification_id}@crm.notify>"
    message.set_content(notification.body, charset="utf-8")
    return message


_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
"""An address `email_bytes` writes as it is: ASCII, no display name, no quoting, no comments."""
_SEVEN_BIT = re.compile(r"[\t\n\r\x20-\x7e]*")


@dataclass(frozen=True)
class Author:
    """Who the e-mail is from: the envelope's address and the From header line."""

    address: str
    header: str


def author(sender: str) -> Author | None:
    """The sender (`Name <address>`, the name in any script) worked out once, by the standard
    library; None when its address is not plain ASCII (its mail then goes `email_message`'s way,
    with SMTPUTF8 where the server offers it)."""
    message = EmailMessage()
    message["From"] = one_line(sender, ADDRESS_LIMIT)
    addresses = message["From"].addresses
    if len(addresses) != 1 or not _PLAIN_ADDRESS.fullmatch(addresses[0].addr_spec):
        return None
    return Author(addresses[0].addr_spec, email.policy.SMTP.fold("From", message["From"]))


def email_bytes(notification: Notification, to: str, sender: Author) -> bytes:
    """The e-mail `email_message` makes, written directly, for a plain address `to`: the same
    headers, a subject in RFC 2047 encoded words when it is not plain ASCII, the body in 7bit when
    it is short-lined ASCII, else base64. The standard library's header parsing and refolding
    cost 0.7–1 ms of CPU a message, most of what sending an e-mail cost; this costs about 25 µs
    (`benchmarks/email_writing.py`, docs/performance.md)."""
    subject = one_line(notification.subject, SUBJECT_LIMIT)
    if not subject.isascii() or "=?" in subject:  # "=?": text a reader would decode
        subject = Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")
    lines = notification.body.encode().splitlines()  # at CR, LF and CRLF only
    if _SEVEN_BIT.fullmatch(notification.body) and all(len(line) <= 998 for line in lines):
        encoding = "7bit"
    else:  # the text in its canonical form, CRLF line breaks, then encoded (RFC 2045 6.8)
        encoding = "base64"
        lines = base64.encodebytes(b"".join(line + b"\r\n" for line in lines)).splitlines()
    content = b"".join(line + b"\r\n" for line in lines)
    head = (
        f"{sender.header}"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {formatdate(localtime=False)}\r\n"
        f"Message-ID: <{notification.notification_id}@crm.notify>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return head.encode("ascii") + content


def smtp_sender(
    server: SmtpServer, sender: str, *, idle_s: float = 30.0, per_connection: int = 100
) -> Send:
    """E-mail over SMTP. A connection is kept for the next message (up to `per_connection`
    messages, unused for at most `idle_s`), as a mail client does: a new connection per message
    cost a TCP handshake, the greeting, EHLO and QUIT each time, about half of the exchanges of a
    message (docs/performance.md). Sends at the same time each use their own connection. A
    connection that fails is closed, never reused; one kept idle that the server has dropped
    meanwhile is found out before the message is handed over, and the message is then sent once
    more on a new connection (nothing was delivered: the server delivers only after the final
    line of DATA). The name this host gives in EHLO is looked up once, at the first send, and
    kept: left to aiosmtplib, every connection resolved it again (`socket.getfqdn` in a worker
    thread)."""
    helo_name: str | None = None
    idle: list[_HandOverSMTP] = []
    plain_sender = author(sender)
    envelope_from = plain_sender.address if plain_sender is not None else ""

    async def connection() -> _HandOverSMTP:
        nonlocal helo_name
        while idle:
            client = idle.pop()  # the most recently used
            if client.is_connected and time.monotonic() - client.idle_since < idle_s:
                return client
            client.close()
        if helo_name is None:  # off the event loop, as aiosmtplib does it
            helo_name = await asyncio.to_thread(socket.getfqdn)
        client = _HandOverSMTP(server, helo_name)
        await client.connect()
        return client

    async def send(notification: Notification, handed_over: HandOver) -> None:
        if not notification.to:
            raise DeliveryError("no address", permanent=True)
        to = one_line(notification.to, ADDRESS_LIMIT)
        letter: bytes | EmailMessage = (
            email_bytes(notification, to, plain_sender)
            if plain_sender is not None and _PLAIN_ADDRESS.fullmatch(to)
            else email_message(notification, sender)
        )
        while True:
            handed = False

            async def on_handed_over() -> None:
                nonlocal handed
                handed = True
                await handed_over()

            client: _HandOverSMTP | None = None
            reused = False
            try:
                client = await connection()
                reused = client.messages > 0
                client.on_handed_over = on_handed_over
                if isinstance(letter, EmailMessage):
                    await client.send_message(letter)
                else:
                    await client.sendmail(envelope_from, [to], letter)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                _close(client)
                raise DeliveryError("recipient refused", permanent=True) from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                _close(client)
                if reused and not handed:
                    continue  # dropped while idle: once more on a new connection
                raise DeliveryError(f"SMTP {server.name}: {type(exc).__name__}") from exc
            except BaseException:  # cancelled (the send's timeout): the exchange is cut short
                _close(client)
                raise
            client.on_handed_over = _nothing
            client.messages += 1
            if client.messages < per_connection:
                client.idle_since = time.monotonic()
                idle.append(client)
            else:
                _close(client)
            return

    return send


def _close(client: aiosmtplib.SMTP | None) -> None:
    if client is not None:
        client.close()


def http_sender(
    url: str,
    token: str | None,
    *,
    timeout_s: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Send:
    """An SMS provider's HTTP API: POST {id, to, text} with `Idempotency-Key: <id>`; any 2xx
    is accepted. The provider is expected to send one SMS per key. Its connections are kept for
    the next messages (`_Poster`)."""
    post = _Poster(timeout_s, transport)

    async def send(notification: Notification, handed_over: HandOver) -> None:
        if not notification.to:
            raise DeliveryError("no phone number", permanent=True)
        headers = {"Idempotency-Key": idempotency_key(notification)}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = {
            "id": notification.notification_id,
            "to": notification.to,
            "text": notification.body,
        }
        await post(url, body, headers)

    return send


def webhook_sender(
    url: str,
    secret: str,
    *,
    timeout_s: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Send:
    """Staff webhooks: `X-CRM-Signature: sha256=<hex HMAC of timestamp.body>`, and
    `Idempotency-Key: <id>` (a receiver drops a key it has seen)."""
    post = _Poster(timeout_s, transport)

    async def send(notification: Notification, handed_over: HandOver) -> None:
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
            "Idempotency-Key": idempotency_key(notification),
            "X-CRM-Timestamp": stamp,
            "X-CRM-Signature": sign(secret, stamp, raw.encode()),
        }
        await post(notification.to or url, raw, headers)

    return send


def idempotency_key(notification: Notification) -> str:
    """The same for every attempt of one notification, on any provider, after any restart."""
    return notification.notification_id


def sign(secret: str, stamp: str, raw: bytes) -> str:
    """What a receiver computes to check `X-CRM-Signature`."""
    return (
        "sha256="
        + hmac.new(secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    )


class _Poster:
    """POSTs through one httpx client, made at the first request and kept, so its connections
    (TCP, and TLS to a provider) carry the next messages instead of a new one per message.
    `transport` is httpx's own seam (None: the network)."""

    def __init__(self, timeout_s: float, transport: httpx.AsyncBaseTransport | None) -> None:
        self.timeout_s = timeout_s
        self.transport = transport
        self.client: httpx.AsyncClient | None = None

    async def __call__(self, url: str, body: object, headers: dict[str, str]) -> None:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=self.timeout_s, transport=self.transport)
        try:
            if isinstance(body, str):
                response = await self.client.post(url, content=body.encode(), headers=headers)
            else:
                response = await self.client.post(url, json=body, headers=headers)
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

    async def send(self, notification: Notification, handed_over: HandedOver) -> str:
        channel = self.channels.get(notification.channel or "")
        if channel is None:
            raise DeliveryError(f"channel {notification.channel} is not configured", permanent=True)
        return await channel.send(notification, handed_over)
