"""Rebuild the archive from the retained topics into a fresh database.

    python -m crm_archive.rebuild --database crm_archive_rebuild [--drop] [--at 2026-12-01T00:00Z]

Reads every consumed topic from the beginning up to the offsets it finds at start, applies the
events with the live handlers (bad messages are skipped: they are in the DLQ already), then runs
the review sweep as of `--at` (default: now). Rules changed in configuration apply to everyone.
Point the service at the new database (`CRM_ARCHIVE_DATABASE`) to switch over.

Customers staff entered and their edits are announced on `members.v1` and come back with it,
for its 30 days. Contacts logged and notes written by staff are on no topic, so a rebuild does
not have them, nor edits older than `members.v1` keeps. Rebuild to recompute what the events
say, not to restore those (a backup does).
"""

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from crm_archive import handlers
from crm_archive.app import customer_repository
from crm_archive.settings import ArchiveSettings
from crm_contracts import CloudEvent, EventDecodeError
from crm_contracts.topics import consumed_by
from crm_runtime.consumer import SkippedEventError, decode_record
from crm_runtime.crypto import CustomerKeys
from crm_runtime.dlq import InboundRecord
from crm_runtime.mongo import Inbox, create_client
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork


async def topic_partitions(
    settings: ArchiveSettings, topics: Sequence[str]
) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options()
    )
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]


async def rebuild(
    settings: ArchiveSettings, database: str, *, drop: bool, at: datetime | None, batch: int = 1000
) -> dict[str, int]:
    rules = settings.rules
    client = create_client(
        settings.mongodb_url, app_name="crm-archive-rebuild", **settings.mongodb_options()
    )
    if drop:
        await client.drop_database(database)
    db = client[database]
    # The rebuilt outbox is left unsent: live consumers already had these events.
    uow = UnitOfWork(client, Inbox(db), Outbox(db))
    keys = CustomerKeys(db, settings.key_ring())
    await keys.ensure_indexes()
    repository = customer_repository(db, uow, keys)
    await repository.ensure_indexes()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        **settings.kafka_client_options(),
    )
    await consumer.start()
    applied = skipped = 0
    try:
        partitions = await topic_partitions(settings, [t.name for t in consumed_by("archive")])
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if end[tp] > 0}

        def clock() -> datetime:
            return at if at is not None else datetime.now(UTC)

        while remaining:
            records = await consumer.getmany(*remaining, timeout_ms=1000, max_records=batch)
            events: list[CloudEvent[Any]] = []
            for tp, rows in records.items():
                for row in rows:
                    if row.offset >= end[tp]:
                        continue
                    record = InboundRecord(
                        row.topic, row.partition, row.offset, row.key, row.value, row.timestamp
                    )
                    try:  # the live consumer's own check: what it dead-lettered is skipped
                        events.append(decode_record(record, handlers.CONSUMED_TYPES, clock()))
                    except (EventDecodeError, SkippedEventError):
                        skipped += 1
                if rows and rows[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if events:
                applied += await handlers.apply_events(events, repository, clock=clock, rules=rules)
        reviewed = await handlers.review(clock(), repository, rules=rules)
    finally:
        await consumer.stop()
        await client.close()
    return {"applied": applied, "skipped": skipped, "reviewed": reviewed}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--database", default="crm_archive_rebuild")
    parser.add_argument("--drop", action="store_true", help="drop the target database first")
    parser.add_argument(
        "--at", type=datetime.fromisoformat, default=None, help="evaluate time rules as of"
    )
    args = parser.parse_args()
    settings = ArchiveSettings()
    if args.database == settings.database:
        sys.exit(f"refusing to rebuild into the live database {settings.database!r}")
    started = time.monotonic()
    counts = asyncio.run(rebuild(settings, args.database, drop=args.drop, at=args.at))
    elapsed = time.monotonic() - started
    print(
        f"rebuilt {args.database}: {counts['applied']} events applied, "
        f"{counts['skipped']} skipped, "
        f"{counts['reviewed']} customers reviewed in {elapsed:.1f} s "
        f"({counts['applied'] / max(elapsed, 1e-9):.0f} events/s)\n"
        "not rebuilt: staff contacts and notes (on no topic), staff entries and edits older "
        "than members.v1's 30 days"
    )


if __name__ == "__main__":
    main()
