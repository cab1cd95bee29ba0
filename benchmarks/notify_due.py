"""What the delivery's read of due messages costs while many messages wait for later (ADR 0021):
notify's repository on the real store, in-process, no Kafka and no sends.

    python benchmarks/notify_due.py [--waiting 3000] [--reads 50]

The delivery runs `MongoNotifyRepository.due` at every sweep (every 2 s by default) and after
every batch that decided a message. Messages that wait for later are `deferred`: to the end of
quiet hours (a send time tomorrow morning), or awaiting their customer's registration (no send
time). Neither kind is due, but a read that scans past them still pays for them. The script
stores `--waiting` of each kind, in steps, and prints the milliseconds per `due()` after each
step, beside the same read written with `$in` over the statuses (the form before 2026-12-05,
fourth session), and the store's CPU per read.
"""

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchutil import cpu_seconds, print_table, private_store
from pymongo import ASCENDING, AsyncMongoClient

from crm_notify.adapters.mongo import MongoNotifyRepository
from crm_notify.domain.notification import Intent, Notification
from crm_notify.domain.policy import Decision, NotifyRules, Preferences, decide
from crm_notify.ports import Changes
from crm_runtime.crypto import CustomerKeys, KeyRing
from crm_runtime.mongo import Inbox
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork

NOW = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)
CHUNK = 500


def awaiting(i: int) -> Notification:
    intent = Intent("ticket_ack", "transactional", f"t{i}", {"ticket_id": f"T-{i}"})
    return Notification.create(
        f"a{i}", intent, decide(None, "transactional", NOW, 0, NotifyRules()), None, NOW
    )


def deferred_to_morning(i: int, registered: Preferences) -> Notification:
    quiet = Decision("defer", "email", reason="quiet_hours", send_at=NOW + timedelta(hours=12))
    return Notification.create(
        f"b{i}", Intent("birthday", "marketing", f"b{i}"), quiet, registered, NOW
    )


async def run(url: str, pid: int, args: argparse.Namespace) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    database = client["crm_notify_due"]
    uow = UnitOfWork(client, Inbox(database), Outbox(database))
    keys = CustomerKeys(database, KeyRing({"k1": b"1" * 32}, "k1", b"i" * 32))
    repository = MongoNotifyRepository(database, uow, keys)
    await repository.ensure_indexes()
    registered = Preferences("c", name="李雷", email="c@example.com", registered=True)
    later = NOW + timedelta(minutes=1)
    before = {"status": {"$in": ["queued", "deferred"]}, "next_attempt_at": {"$lte": later}}

    async def per_read(read: Any) -> tuple[float, float]:
        store, wall = cpu_seconds(pid), time.perf_counter()
        for _ in range(args.reads):
            await read()
        wall, store = time.perf_counter() - wall, cpu_seconds(pid) - store
        return 1e3 * wall / args.reads, 1e3 * store / args.reads

    async def old_form() -> None:
        cursor = repository.notifications.find(
            before, sort=[("next_attempt_at", ASCENDING)], limit=100
        )
        _ = [doc async for doc in cursor]

    async def new_form() -> None:
        await repository.due(later, NOW, 100)

    rows = []
    stored = {"awaiting": 0, "deferred to the morning": 0}
    for kind, make in (
        ("", awaiting),
        ("awaiting", awaiting),
        ("deferred to the morning", lambda i: deferred_to_morning(i, registered)),
    ):
        if kind:
            for start in range(0, args.waiting, CHUNK):
                batch = [make(i) for i in range(start, min(start + CHUNK, args.waiting))]
                await repository.save(Changes(notifications=batch))
            stored[kind] = args.waiting
        new_ms, new_store = await per_read(new_form)
        old_ms, old_store = await per_read(old_form)
        rows.append(
            [
                f"{stored['awaiting']:,}",
                f"{stored['deferred to the morning']:,}",
                f"{new_ms:.2f}",
                f"{new_store:.2f}",
                f"{old_ms:.2f}",
                f"{old_store:.2f}",
            ]
        )
    print_table(
        "notify's read of due messages (100 at most; none is due), ms per read",
        [
            "awaiting",
            "deferred to morning",
            "due() ms",
            "store CPU ms",
            "$in form ms",
            "store CPU ms",
        ],
        rows,
    )
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waiting", type=int, default=3_000)
    parser.add_argument("--reads", type=int, default=50)
    args = parser.parse_args()
    with private_store("crm-notify-due-") as (url, pid):
        asyncio.run(run(url, pid, args))


if __name__ == "__main__":
    main()
