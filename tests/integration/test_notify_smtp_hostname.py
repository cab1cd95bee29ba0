"""Notify's e-mail sender against a real SMTP server: the name it gives in EHLO is looked up once
per sender, not once per message (each lookup was a host-name query in a worker thread that
every e-mail waited for, docs/performance.md)."""

import socket
from datetime import UTC, datetime

import pytest
from stackutil import SmtpServer

from crm_notify.adapters.channels import SmtpServer as SmtpSettings
from crm_notify.adapters.channels import smtp_sender
from crm_notify.domain.notification import Notification


def notification(n: int) -> Notification:
    return Notification(
        notification_id=f"N-helo-{n}",
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


async def test_the_ehlo_name_is_looked_up_once_per_sender_not_per_message(
    smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []

    def getfqdn(name: str = "") -> str:
        lookups.append(name)
        return "notify-1.crm.internal"

    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    send = smtp_sender(SmtpSettings("127.0.0.1", smtp.port), "crm@example.com")
    handed: list[int] = []

    async def handed_over() -> None:
        handed.append(1)

    for n in range(3):
        await send(notification(n), handed_over)

    delivered = [m["To"] for m in smtp.mailbox.messages if m["Message-ID"].startswith("<N-helo-")]
    assert delivered == ["c0@example.com", "c1@example.com", "c2@example.com"]
    assert len(handed) == 3
    assert len(lookups) == 1, f"the host name was looked up {len(lookups)} times for 3 messages"
    assert smtp.mailbox.helo_names[-3:] == ["notify-1.crm.internal"] * 3
