"""Notify's senders keep their connections for the next message (issue #16), against real
servers, and still deliver each message once. E-mail (aiosmtpd): a new connection per message
cost a TCP handshake, the greeting, EHLO and QUIT each time (docs/performance.md); sends at the
same time use their own connections; a connection the server dropped while it was idle is
replaced and the message delivered once; a connection is left after `per_connection` messages.
SMS and staff webhooks (an HTTP/1.1 server): one kept-alive connection, not one per message.
The name the e-mail sender gives in EHLO is looked up once per sender, not once per message
(each lookup was a host-name query in a worker thread that every e-mail waited for)."""

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from stackutil import SmtpServer

from crm_notify.adapters import channels
from crm_notify.adapters.channels import SmtpServer as SmtpSettings
from crm_notify.adapters.channels import http_sender, smtp_sender, webhook_sender
from crm_notify.domain.notification import Notification


def notification(n: int) -> Notification:
    return Notification(
        notification_id=f"N-conn-{n}",
        customer_id=f"c{n}",
        template="welcome",
        purpose="transactional",
        cause=f"e{n}",
        created_at=datetime.now(UTC),
        channel="email",
        to=f"c{n}@example.com",
        subject="欢迎",
        body="您好",
    )


class HandOvers:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


def delivered(smtp: SmtpServer) -> list[str]:
    return [m["Message-ID"] for m in smtp.mailbox.messages]


@pytest.fixture
def quick_to_hang_up() -> Iterator[SmtpServer]:
    """A server that drops a connection after 0.3 s without a command."""
    server = SmtpServer(idle_timeout_s=0.3)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


async def test_the_ehlo_name_is_looked_up_once_per_sender_not_per_message(
    own_smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []

    def getfqdn(name: str = "") -> str:
        lookups.append(name)
        return "notify-1.crm.internal"

    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    settings = SmtpSettings("127.0.0.1", own_smtp.port)
    send = smtp_sender(settings, "crm@example.com", per_connection=1)  # a connection each
    for n in range(3):
        await send(notification(n), HandOvers())
    assert [m["To"] for m in own_smtp.mailbox.messages] == [f"c{n}@example.com" for n in range(3)]
    assert len(set(own_smtp.mailbox.peers)) == 3
    assert len(lookups) == 1, f"the host name was looked up {len(lookups)} times for 3 messages"
    assert own_smtp.mailbox.helo_names == ["notify-1.crm.internal"] * 3


async def test_messages_one_after_another_go_over_one_connection(own_smtp: SmtpServer) -> None:
    send = smtp_sender(SmtpSettings("127.0.0.1", own_smtp.port), "crm@example.com")
    handed = HandOvers()
    for n in range(5):
        await send(notification(n), handed)
    assert delivered(own_smtp) == [f"<N-conn-{n}@crm.notify>" for n in range(5)]
    assert handed.count == 5
    assert len(set(own_smtp.mailbox.peers)) == 1, own_smtp.mailbox.peers


async def test_a_connection_is_left_after_per_connection_messages(own_smtp: SmtpServer) -> None:
    settings = SmtpSettings("127.0.0.1", own_smtp.port)
    send = smtp_sender(settings, "crm@example.com", per_connection=2)
    for n in range(5):
        await send(notification(n), HandOvers())
    assert len(delivered(own_smtp)) == 5
    peers = own_smtp.mailbox.peers
    assert len(set(peers)) == 3
    assert peers[0] == peers[1]
    assert peers[2] == peers[3] != peers[0]


async def test_sends_at_the_same_time_use_their_own_connections(own_smtp: SmtpServer) -> None:
    send = smtp_sender(SmtpSettings("127.0.0.1", own_smtp.port), "crm@example.com")
    handed = HandOvers()
    await asyncio.gather(*(send(notification(n), handed) for n in range(4)))
    assert sorted(delivered(own_smtp)) == sorted(f"<N-conn-{n}@crm.notify>" for n in range(4))
    assert handed.count == 4
    assert len(set(own_smtp.mailbox.peers)) == 4
    for n in range(4, 8):  # then one after another: one of those four connections, kept
        await send(notification(n), handed)
    assert len(delivered(own_smtp)) == 8
    assert len(set(own_smtp.mailbox.peers)) == 4


async def test_a_connection_the_server_dropped_while_idle_is_replaced(
    quick_to_hang_up: SmtpServer,
) -> None:
    send = smtp_sender(SmtpSettings("127.0.0.1", quick_to_hang_up.port), "crm@example.com")
    handed = HandOvers()
    await send(notification(0), handed)
    await asyncio.sleep(0.8)  # the server hangs up the idle connection
    await send(notification(1), handed)
    assert delivered(quick_to_hang_up) == ["<N-conn-0@crm.notify>", "<N-conn-1@crm.notify>"]
    assert handed.count == 2
    assert len(set(quick_to_hang_up.mailbox.peers)) == 2


async def test_a_dropped_connection_not_yet_noticed_is_retried_once_on_a_new_one(
    quick_to_hang_up: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client has not seen the hang-up (as when the network lost it): the message fails on
    the kept connection before it is handed over, and goes once over a new one."""
    send = smtp_sender(SmtpSettings("127.0.0.1", quick_to_hang_up.port), "crm@example.com")
    handed = HandOvers()
    await send(notification(0), handed)
    await asyncio.sleep(0.8)
    really = channels._HandOverSMTP.is_connected
    seems = property(lambda self: self.messages > 0 or really.__get__(self))  # the kept one
    monkeypatch.setattr(channels._HandOverSMTP, "is_connected", seems)
    await send(notification(1), handed)
    assert delivered(quick_to_hang_up) == ["<N-conn-0@crm.notify>", "<N-conn-1@crm.notify>"]
    assert handed.count == 2, "handed over once each"


class Provider(BaseHTTPRequestHandler):
    """An SMS provider's or a staff webhook receiver's end, HTTP/1.1 with keep-alive: it keeps
    each request's body and the client port it came from."""

    protocol_version = "HTTP/1.1"
    received: ClassVar[list[tuple[int, dict[str, object]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Provider.received.append((self.client_address[1], json.loads(body)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def provider() -> Iterator[str]:
    Provider.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_sms_and_webhooks_go_over_one_kept_connection(provider: str) -> None:
    sms = http_sender(f"{provider}/sms", "token")
    hook = webhook_sender(f"{provider}/hook", "secret")
    for n in range(4):
        await sms(notification(n), HandOvers())
    for n in range(4, 7):  # to the configured URL (a staff message's own would be in `to`)
        await hook(replace(notification(n), to=None), HandOvers())
    ids = [body["id"] for _, body in Provider.received]
    assert ids == [f"N-conn-{n}" for n in range(7)]
    sms_ports = {port for port, _ in Provider.received[:4]}
    hook_ports = {port for port, _ in Provider.received[4:]}
    assert len(sms_ports) == 1, "four SMS over one connection"
    assert len(hook_ports) == 1, "three webhooks over one connection"
