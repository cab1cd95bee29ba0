"""Archive order ingest on the real local stack: events/s and resident memory.

    python benchmarks/archive_ingest.py [--orders 20000] [--customers 4000] [--batch 500]

Starts a private Apache Kafka + SecantusDB on free ports (or uses KAFKA_BOOTSTRAP_SERVERS /
MONGODB_URL), pre-loads `orders.v1` with `order.placed` events, starts the archive with its own
database and consumer group, and times it from ready to the last order applied. Prints a table.
"""

import argparse
import asyncio
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "deploy" / "local"), str(ROOT / "tests")]

import stack  # noqa: E402
from stackutil import free_port, order_placed, produce  # noqa: E402


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=4_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    started: list[int] = []
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        mongodb_url = os.environ.get("MONGODB_URL", "")
        if not bootstrap:
            node = stack.KafkaNode(workdir / "kafka", free_port(), free_port())
            started.append(node.start().pid)
            bootstrap = node.bootstrap
        if not mongodb_url:
            mongo = stack.MongoNode(workdir / "db", free_port())
            started.append(mongo.start().pid)
            mongodb_url = mongo.url
        stack.provision_topics(bootstrap)
        rng = random.Random(1)
        run = f"bench{int(time.time())}"
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        messages = []
        for n in range(args.orders):
            customer = f"{run}-{rng.randrange(args.customers)}"
            amount = str(Decimal(rng.randrange(100, 100_000)) / 100)
            at = t0 + timedelta(seconds=rng.randrange(10**7))
            messages.append((customer, order_placed(customer, f"{run}-o{n}", amount, time=at)))
        asyncio.run(produce(bootstrap, "orders.v1", messages))
        port = free_port()
        env = stack.service_env(
            "archive",
            port,
            bootstrap,
            mongodb_url,
            {
                "CRM_ARCHIVE_DATABASE": f"crm_archive_{run}",
                "CRM_ARCHIVE_CONSUMER_GROUP": run,
                "CRM_ARCHIVE_BATCH_MAX_RECORDS": str(args.batch),
            },
        )
        proc = stack.start_service("archive", env, workdir / "archive.log")
        started.append(proc.pid)
        stack.wait_for(lambda: stack.service_ready(port), "archive", 120, proc)
        begin = time.monotonic()
        peak = 0.0
        done = 0.0
        while done < args.orders:
            time.sleep(0.2)
            done = metric(port, "crm_events_processed_total")
            peak = max(peak, rss_mb(proc.pid))
        elapsed = time.monotonic() - begin
        store = "MONGODB_URL" if "MONGODB_URL" in os.environ else "SecantusDB (embedded)"
        machine = (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        print(f"\nArchive ingest ({machine}; store: {store})")
        header = ("orders", "customers", "batch", "seconds", "events/s", "peak RSS MB")
        row = (
            args.orders,
            args.customers,
            args.batch,
            f"{elapsed:.1f}",
            f"{args.orders / elapsed:.0f}",
            f"{peak:.0f}",
        )
        print("| " + " | ".join(f"{h:>11}" for h in header) + " |")
        print("|" + "|".join("-" * 13 for _ in header) + "|")
        print("| " + " | ".join(f"{v:>11}" for v in row) + " |")
    finally:
        for pid in reversed(started):
            stack.stop_pid(pid)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
