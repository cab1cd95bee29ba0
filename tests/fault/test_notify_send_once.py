"""Notify killed in the middle of a send: one e-mail per notification, none lost.

What this protects: a notification is claimed (`sending`) before it is sent, and notify records
when the SMTP server has the whole message (the end of DATA written). SIGKILL lands
deterministically where we want it: the SMTP server here holds its reply to the first message
(after DATA, or after RCPT) until the test has killed notify.

- Killed after the server has the message, before notify saved the outcome: after the restart
  the message is not sent again (before the fix it was: two e-mails with one Message-ID).
- Killed before the server has the whole message (held at RCPT): after the restart it is sent,
  once — the claim does not lose it.
- A sweep run that outlasts its lease keeps it (renewed while the job runs), so another replica
  does not start a second delivery run beside it.
"""

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, MongoClient
from stackutil import (
    FaultStack,
    Mailbox,
    ServiceProcess,
    cloud_event,
    eventually,
    free_port,
    produce,
    unique,
)

from crm_runtime.sweeps import Leases, SweepRunner

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(600)]
CUSTOMERS = 5


class HoldingMailbox(Mailbox):
    """Keeps what it accepts; holds its reply to the first message at `hold_at` ("DATA": after
    the whole message arrived and was kept; "RCPT": before the message data) until released."""

    def __init__(self, hold_at: str) -> None:
        super().__init__()
        self.hold_at = hold_at
        self.port = free_port()
        self.held = False
        self.released = False

    async def _hold(self) -> None:
        self.held = True
        while not self.released:  # noqa: ASYNC110 - released from the test's thread
            await asyncio.sleep(0.05)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.hold_at == "RCPT" and not self.held:
            await self._hold()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        reply = await super().handle_DATA(server, session, envelope)
        if self.hold_at == "DATA" and not self.held:
            await self._hold()
        return reply


@pytest.fixture
def holding_smtp(request: pytest.FixtureRequest) -> Iterator[HoldingMailbox]:
    mailbox = HoldingMailbox(request.param)
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        mailbox.released = True
        controller.stop()


def notify_service(stack: FaultStack, smtp_port: int) -> ServiceProcess:
    return ServiceProcess.isolated(
        "notify",
        stack,
        smtp_host="127.0.0.1",
        smtp_port=str(smtp_port),
        deliver_interval_s="0.3",
        retry_initial_s="0.5",  # the runtime back-off, and the delivery retry:
        rules__retry_initial_s="0.5",
        retry_max_s="2",
        rules__retry_max_s="2",
        rules__max_attempts="30",
        send_timeout_s="4",  # a claim lasts twice as long: a dead sender's claim lapses in 8 s
    )


def registrations(run: str) -> list[tuple[str, bytes]]:
    return [
        (
            f"{run}-{i}",
            cloud_event(
                "customer.registered",
                f"{run}-{i}",
                {"name": "李雷", "email": f"{run}-{i}@example.com"},
                event_id=f"{run}-reg{i}",
            ),
        )
        for i in range(CUSTOMERS)
    ]


def kill_while_held_then_restart(
    faulty: FaultStack, smtp: HoldingMailbox
) -> tuple[ServiceProcess, str, list[dict[str, Any]]]:
    """Register CUSTOMERS customers, SIGKILL notify while the server holds the first message,
    restart it; return the service, the run and every welcome once all are sent."""
    notify = notify_service(faulty, smtp.port).start()
    run = unique("once")
    asyncio.run(produce(faulty.bootstrap, "members.v1", registrations(run)))
    eventually(lambda: smtp.held, timeout=60, interval=0.05)
    time.sleep(1.0)  # notify records what it records once the message is written: let it land
    notify.kill()
    smtp.released = True
    notify.start()
    client: MongoClient[dict[str, Any]] = MongoClient(faulty.mongodb_url, tz_aware=True)
    try:
        collection = client[notify.env["CRM_NOTIFY_DATABASE"]]["notifications"]
        mine = {"customer_id": {"$regex": f"^{run}-"}, "template": "welcome"}
        eventually(
            lambda: collection.count_documents({**mine, "status": "sent"}) == CUSTOMERS,
            timeout=90,
            interval=0.3,
        )
        time.sleep(2.0)  # a few more delivery runs: a repeat would show now
        return notify, run, list(collection.find(mine))
    finally:
        client.close()


def emails_by_message_id(smtp: HoldingMailbox, run: str) -> Counter[str]:
    with smtp.lock:
        ours = [m for m in smtp.messages if str(m["To"]).startswith(f"{run}-")]
    return Counter(f"{m['To']} {m['Message-ID']}" for m in ours)


@pytest.mark.parametrize("holding_smtp", ["DATA"], indirect=True)
def test_killed_after_the_server_has_the_message_it_is_not_sent_again(
    faulty: FaultStack, holding_smtp: HoldingMailbox
) -> None:
    notify, run, welcomes = kill_while_held_then_restart(faulty, holding_smtp)
    try:
        emails = emails_by_message_id(holding_smtp, run)
        assert len(emails) == CUSTOMERS, f"every customer got their welcome: {emails}"
        repeated = {k: n for k, n in emails.items() if n > 1}
        assert repeated == {}, f"e-mails sent more than once after the kill: {repeated}"
        unconfirmed = [w for w in welcomes if "unconfirmed" in (w["history"][-1]["reason"] or "")]
        assert len(unconfirmed) == 1, [w["history"] for w in welcomes]
        assert [h["status"] for h in unconfirmed[0]["history"]] == ["queued", "sent"]
    finally:
        notify.stop()


@pytest.mark.parametrize("holding_smtp", ["RCPT"], indirect=True)
def test_killed_before_the_server_has_the_message_it_is_sent_once_after_the_restart(
    faulty: FaultStack, holding_smtp: HoldingMailbox
) -> None:
    notify, run, welcomes = kill_while_held_then_restart(faulty, holding_smtp)
    try:
        emails = emails_by_message_id(holding_smtp, run)
        assert len(emails) == CUSTOMERS, f"every customer got their welcome: {emails}"
        assert set(emails.values()) == {1}, f"one e-mail per notification: {emails}"
        assert not any("unconfirmed" in (w["history"][-1]["reason"] or "") for w in welcomes)
    finally:
        notify.stop()


async def test_a_sweep_run_longer_than_its_lease_keeps_it(faulty: FaultStack) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(faulty.mongodb_url, tz_aware=True)
    database = client[unique("crm_sweep").replace("-", "_")]
    runner = SweepRunner("test", Leases(database, "replica-1"), CollectorRegistry(), min_lease_s=1)
    other = Leases(database, "replica-2")
    taken: list[bool] = []

    async def long_run(now: datetime) -> int:
        for _ in range(6):  # 3 s: three times the lease
            await asyncio.sleep(0.5)
            taken.append(await other.acquire("sweep:test:deliver", ttl_s=1))
        return 0

    runner.add("deliver", 0.1, long_run)
    try:
        assert await runner.run_once("deliver") == 0
        assert taken == [False] * 6, "another replica took the lease during the run"
        assert await other.acquire("sweep:test:deliver", ttl_s=1), "released at the end"
    finally:
        await client.drop_database(database.name)
        await client.close()
