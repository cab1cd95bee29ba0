"""`crm backup` and `crm restore` speed: what the restore time objective (RTO) is made of.

Fills a loyalty-shaped database (accounts, a ledger, the inbox, the outbox, data keys: about six
documents per order) on a private SecantusDB + Kafka, then takes a backup and restores it into
the emptied database with the CLI's own functions. Prints documents per second for the snapshot
dump and for the load, and the bytes written.

    .venv/bin/python benchmarks/backup_restore.py [--orders 100000]
"""

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from benchutil import print_table, private_stack
from bson.decimal128 import Decimal128
from pymongo import MongoClient

from crm_cli import backup
from crm_cli.connection import client_options

CUSTOMERS = 5000


def fill(url: str, database: str, orders: int) -> int:
    client: MongoClient[dict[str, object]] = MongoClient(url, tz_aware=True)
    db = client[database]
    now = datetime.now(UTC)
    db["accounts"].insert_many(
        {"_id": f"c-{n}", "balance": 0, "tier": "standard", "version": 1} for n in range(CUSTOMERS)
    )
    db["data_keys"].insert_many(
        {"_id": f"c-{n}", "key_id": "k1", "wrapped": os.urandom(60), "created_at": now}
        for n in range(CUSTOMERS)
    )
    step = 10_000
    for first in range(0, orders, step):
        ids = range(first, min(first + step, orders))
        db["ledger"].insert_many(
            {
                "_id": f"e-{n}",
                "customer_id": f"c-{n % CUSTOMERS}",
                "points": n % 500,
                "amount": Decimal128(Decimal(n % 50_000) / 100),
                "at": now - timedelta(minutes=n),
                "source_event_id": f"o-{n}",
            }
            for n in ids
        )
        db["processed_events"].insert_many(
            {"_id": f"o-{n}", "type": "order.placed", "at": now} for n in ids
        )
        db["outbox"].insert_many(
            {
                "_id": f"p-{n}",
                "topic": "loyalty.v1",
                "key": f"c-{n % CUSTOMERS}",
                "sent": True,
                "sent_at": now,
                "created_at": now,
                "seq": n,
            }
            for n in ids
        )
    total = sum(db[name].estimated_document_count() for name in db.list_collection_names())
    client.close()
    return total


async def measure(bootstrap: str, url: str, orders: int, workdir: Path) -> list[list[object]]:
    database = "crm_loyalty_bench"
    documents = fill(url, database, orders)
    options = client_options(bootstrap)
    target = backup.Target("loyalty", database, "loyalty-bench")
    started = time.perf_counter()
    report = await backup.take_backup(
        options,
        url,
        [target],
        workdir / "data",
        workdir / "keys",
        timedelta(days=30),
        backup.NoProgress(),
    )
    dumped = time.perf_counter() - started
    size = sum(item.bytes for item in report.manifest.services["loyalty"].collections.values())
    client: MongoClient[dict[str, object]] = MongoClient(url)
    client.drop_database(database)
    client.close()
    started = time.perf_counter()
    restored = await backup.restore(
        options,
        url,
        report.data,
        workdir / "keys",
        ["loyalty"],
        drop=False,
        without_keys=False,
        progress=backup.NoProgress(),
    )
    loaded = time.perf_counter() - started
    count = restored.documents["loyalty"] + CUSTOMERS  # and the data keys
    return [
        ["backup", documents, f"{dumped:.1f}", f"{documents / dumped:.0f}", f"{size / 1e6:.1f}"],
        ["restore", count, f"{loaded:.1f}", f"{count / loaded:.0f}", "-"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crm-backup-bench-"))
    try:
        with private_stack() as stack:
            rows = asyncio.run(measure(stack.bootstrap, stack.mongodb_url, args.orders, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(
        f"crm backup / crm restore, one loyalty database, {args.orders} orders",
        ["step", "documents", "seconds", "docs/s", "MB written"],
        rows,
    )


if __name__ == "__main__":
    main()
