"""Notify's messages awaiting their customer's registration on the real MongoDB-wire server: the
repository finds them by customer (what a registration releases) and by the end of their wait
(the sweep), keeps them out of the delivery's reads and out of the daily cap, and stores their
trigger's variables only while they wait. Every message keeps its cause's time, which the
send's last check ages (ADR 0023)."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from stackutil import Stack, unique

from crm_notify.adapters.mongo import MongoNotifyRepository
from crm_notify.domain.notification import Intent, Notification
from crm_notify.domain.policy import NotifyRules, Preferences, Purpose, decide
from crm_notify.ports import Changes
from crm_runtime.crypto import CustomerKeys, KeyRing
from crm_runtime.mongo import Inbox
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)
RULES = NotifyRules()


@pytest.fixture
async def repository(stack: Stack) -> AsyncIterator[MongoNotifyRepository]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url, tz_aware=True)
    database = client[unique("crm_notify_awaiting").replace("-", "_")]
    uow = UnitOfWork(client, Inbox(database), Outbox(database))
    keys = CustomerKeys(database, KeyRing({"k1": b"1" * 32}, "k1", b"i" * 32))
    repository = MongoNotifyRepository(database, uow, keys)
    await repository.ensure_indexes()
    yield repository
    await client.drop_database(database.name)
    await client.close()


def awaited(customer_id: str, template: str, cause: str, **variables: Any) -> Notification:
    purpose: Purpose = "marketing" if template == "retention" else "transactional"
    intent = Intent(template, purpose, cause, variables, occurred_at=NOW - timedelta(minutes=1))
    decision = decide(None, purpose, NOW, 0, RULES)
    assert decision.action == "await"
    return Notification.create(customer_id, intent, decision, None, NOW)


async def test_awaiting_messages_are_found_by_customer_and_by_the_end_of_their_wait(
    repository: MongoNotifyRepository,
) -> None:
    ack = awaited("c1", "ticket_ack", "ev1", ticket_id="T-1")
    retention = awaited("c1", "retention", "ev2")
    other = awaited("c2", "ticket_ack", "ev3", ticket_id="T-2")
    await repository.save(Changes(notifications=[ack, retention, other]))

    mine = await repository.awaiting(["c1"])
    assert sorted(n.template for n in mine) == ["retention", "ticket_ack"]
    [stored] = [n for n in mine if n.template == "ticket_ack"]
    assert stored.variables == {"ticket_id": "T-1"}
    assert stored.occurred_at == NOW - timedelta(minutes=1)  # for its age at the release
    assert stored.awaiting_until == NOW + timedelta(seconds=RULES.registration_wait_s)
    assert await repository.due(NOW + timedelta(days=1), NOW, 100) == []  # never sent as is
    assert await repository.counted_since("c1", NOW - timedelta(hours=1)) == 0  # not capped
    end = NOW + timedelta(seconds=RULES.registration_wait_s)
    assert await repository.awaiting_over(end - timedelta(seconds=1), 10) == []
    assert len(await repository.awaiting_over(end, 10)) == 3

    registered = Preferences("c1", name="李雷", email="c1@example.com", registered=True)
    stored.release(decide(registered, "transactional", NOW, 0, RULES), registered, NOW)
    await repository.save(Changes(released=[stored]))
    assert [n.template for n in await repository.awaiting(["c1"])] == ["retention"]
    [sent_next] = await repository.due(NOW, NOW, 100)
    assert (sent_next.status, sent_next.to, sent_next.variables) == (
        "queued",
        "c1@example.com",
        None,
    )
    raw = await repository.notifications.find_one({"_id": sent_next.notification_id})
    assert raw is not None
    assert "variables" not in raw
    assert "awaiting_until" not in raw


async def test_a_queued_message_keeps_its_cause_s_time_for_the_send_s_check(
    repository: MongoNotifyRepository,
) -> None:
    registered = Preferences("c9", name="李雷", email="c9@example.com", registered=True)
    cause = NOW - timedelta(hours=2)
    intent = Intent("ticket_ack", "transactional", "ev9", {"ticket_id": "T-9"}, occurred_at=cause)
    queued = Notification.create(
        "c9", intent, decide(registered, "transactional", NOW, 0, RULES), registered, NOW
    )
    await repository.save(Changes(notifications=[queued]))
    [due] = await repository.due(NOW, NOW, 10)
    assert due.occurred_at == cause
