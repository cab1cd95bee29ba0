"""Shared by the benchmark scripts: a private stack, metrics, memory, a printed table."""

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "deploy" / "local"), str(ROOT / "tests")]

import stack  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from bson.decimal128 import Decimal128  # noqa: E402
from pymongo import UpdateOne  # noqa: E402
from stackutil import free_port, order_placed, topic_partitions  # noqa: E402

Probe = tuple[str, str, bytes, str]
"""(topic, key, value, match id) of one probe message."""


def random_orders(run: str, orders: int, customers: int) -> list[tuple[str, bytes]]:
    """(customer, `order.placed`) for `orders` orders over `customers` customers named after
    `run`: the same amounts (1.00-999.99) and times (2026's first 116 days) for the same counts."""
    rng = random.Random(1)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    messages = []
    for n in range(orders):
        customer = f"{run}-{rng.randrange(customers)}"
        amount = str(Decimal(rng.randrange(100, 100_000)) / 100)
        at = t0 + timedelta(seconds=rng.randrange(10**7))
        messages.append((customer, order_placed(customer, f"{run}-o{n}", amount, time=at)))
    return messages


def customer_upserts(per_customer: dict[str, dict[str, Any]]) -> list[UpdateOne]:
    """Issue #16's essential floor's customer writes: per customer, one upsert of `$inc` its
    events (`n`) and amount, `$min` its first time, `$max` its last."""
    return [
        UpdateOne(
            {"_id": customer},
            {
                "$inc": {"events": f["n"], "amount": Decimal128(f["amount"])},
                "$min": {"first_at": f["first"]},
                "$max": {"last_at": f["last"]},
            },
            upsert=True,
        )
        for customer, f in per_customer.items()
    ]


@dataclass
class BenchStack:
    bootstrap: str
    mongodb_url: str
    workdir: Path
    pids: list[int]
    store_pid: int | None = None
    """The database server's process, when this stack started it."""
    kafka_pid: int | None = None
    """The broker's process, when this stack started it."""

    def _spawn(self, name: str, env: dict[str, str]) -> tuple[int, Any]:
        """Start a service on a free port with `env` (CRM_<NAME>_*); returns at once."""
        port = free_port()
        full = stack.service_env(name, port, self.bootstrap, self.mongodb_url, env)
        proc = stack.start_service(name, full, self.workdir / f"{name}.log")
        self.pids.append(proc.pid)
        return port, proc

    def start_service(self, name: str, env: dict[str, str]) -> tuple[int, Any]:
        """Start a service on a free port with `env` (CRM_<NAME>_*); wait until ready."""
        port, proc = self._spawn(name, env)
        stack.wait_for(lambda: stack.service_ready(port), name, 120, proc)
        return port, proc

    def start_as_deployed(self, name: str, env: dict[str, str]) -> dict[str, tuple[int, Any]]:
        """Service `name` as the local stack runs it: its own process and its replicas
        (`stack.REPLICAS`: notify's bulk), each on a free port with `env` (CRM_<NAME>_*), each at
        its weight; waits until all are ready. {process name: (port, process)}, its own first."""
        own = {**stack.first_process_env(name, stack.REPLICAS), **env}
        started = {name: self._spawn(name, own)}
        for process, replica in stack.replicas_of(name, stack.REPLICAS).items():
            started[process] = self._spawn_replica(process, replica, env)
        for process, (port, proc) in started.items():
            stack.wait_for(functools.partial(stack.service_ready, port), process, 120, proc)
        return started

    def _spawn_replica(
        self, process: str, replica: stack.Replica, env: dict[str, str]
    ) -> tuple[int, Any]:
        moved = dataclasses.replace(replica, port=free_port())
        full = stack.replica_env(moved, self.bootstrap, self.mongodb_url, env)
        proc = stack.start_service(replica.service, full, self.workdir / f"{process}.log", process)
        self.pids.append(proc.pid)
        return moved.port, proc

    def start_on_backlog(
        self, name: str, env: dict[str, str], metric_names: Sequence[str], backlog: int
    ) -> tuple[int, Any, int]:
        """Start a service on a backlog of `backlog` messages waiting in its topics; as soon as
        it has counted its first events in `metric_names`: (port, process, how many). Time and
        CPU counted from then cover the rest of the backlog. Not from ready: the archive's two
        consumers (ADR 0026) are ready once both have joined, and the first works through the
        backlog while the second joins."""
        port, proc = self._spawn(name, env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):  # its HTTP server is not up yet
                handled = int(stack.metric(port, *metric_names))
                if handled >= backlog:
                    raise SystemExit(f"{name}'s first batch was its whole backlog ({backlog})")
                if handled:
                    return port, proc, handled
            time.sleep(0.05)
        raise RuntimeError(f"{name} handled nothing in 120 s (see {self.workdir / name}.log)")


@contextlib.contextmanager
def private_stack() -> Iterator[BenchStack]:
    """Apache Kafka + SecantusDB on free ports (or KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL)."""
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    pids: list[int] = []
    store_pid: int | None = None
    kafka_pid: int | None = None
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        mongodb_url = os.environ.get("MONGODB_URL", "")
        if not bootstrap:
            node = stack.KafkaNode(workdir / "kafka", free_port(), free_port())
            kafka_pid = node.start().pid
            pids.append(kafka_pid)
            bootstrap = node.bootstrap
        if not mongodb_url:
            mongo = stack.MongoNode(workdir / "db", free_port())
            store_pid = mongo.start().pid
            pids.append(store_pid)
            mongodb_url = mongo.url
        stack.provision_topics(bootstrap)
        yield BenchStack(bootstrap, mongodb_url, workdir, pids, store_pid, kafka_pid)
    finally:
        for pid in reversed(pids):
            stack.stop_pid(pid)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def private_store(prefix: str) -> Iterator[tuple[str, int]]:
    """SecantusDB alone on a free port in a temporary folder: (its URL, its pid); stopped after.
    For the benchmarks that call a service's use cases in-process, without Kafka."""
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        node = stack.MongoNode(Path(workdir), free_port())
        proc = node.start()
        try:
            yield node.url, proc.pid
        finally:
            proc.terminate()
            proc.wait(30)


def time_ingest(
    port: int,
    pid: int,
    total: float,
    metric_names: Sequence[str] = ("crm_events_processed_total",),
) -> tuple[float, float]:
    """Wait until the service on `port` has counted `total` events in `metric_names` (default:
    applied): (seconds, peak RSS MB)."""
    begin = time.monotonic()
    peak = done = 0.0
    while done < total:
        time.sleep(0.2)
        done = stack.metric(port, *metric_names)
        peak = max(peak, rss_mb(pid))
    return time.monotonic() - begin, peak


def outbox_drained(port: int, timeout_s: float = 120.0) -> None:
    """Wait until the service's relay has published everything it stored (the backlog gauge is
    refreshed on each scrape), so a CPU figure includes the relay's share."""
    deadline = time.monotonic() + timeout_s
    while stack.metric(port, "crm_outbox_backlog") > 0 and time.monotonic() < deadline:
        time.sleep(0.2)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process has used so far (0 if unknown)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    store = (
        "MONGODB_URL"
        if "MONGODB_URL" in os.environ
        else f"SecantusDB {stack.store_server(build=False).name}"
    )
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\n{title} ({machine}; store: {store})")
    width = max(11, *(len(h) for h in header))
    print("| " + " | ".join(f"{h:>{width}}" for h in header) + " |")
    print("|" + "|".join("-" * (width + 2) for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(f"{v!s:>{width}}" for v in row) + " |")


async def latencies(
    bootstrap: str,
    probes: Sequence[Probe],
    out_topic: str,
    matches: Callable[[dict[str, object]], str | None],
    *,
    interval_s: float = 0.05,
    timeout_s: float = 120,
) -> list[float]:
    """Send each probe (one every `interval_s`) and time it until the first event on `out_topic`
    for which `matches(event)` returns its match id. Returns the seconds of those answered."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    partitions = await topic_partitions(bootstrap, [out_topic])
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:
        await consumer.position(partition)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}

    async def receive() -> None:
        while len(seen) < len(probes):
            batches = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    found = matches(json.loads(record.value))
                    if found in sent:
                        seen.setdefault(found, now)

    receiver = asyncio.create_task(receive())
    try:
        for topic, key, value, match_id in probes:
            sent[match_id] = time.monotonic()
            await producer.send_and_wait(topic, value, key=key.encode())
            await asyncio.sleep(interval_s)
        await asyncio.wait_for(receiver, timeout=timeout_s)
    finally:
        receiver.cancel()
        await producer.stop()
        await consumer.stop()
    return [seen[m] - sent[m] for m in sent if m in seen]


def latency_row(times: list[float]) -> tuple[int, str, str, str]:
    """(count, p50 ms, p95 ms, max ms)."""
    ordered = sorted(times)
    if not ordered:
        return (0, "-", "-", "-")
    q = [ordered[0]] * 99 if len(ordered) == 1 else statistics.quantiles(ordered, n=100)
    return (
        len(ordered),
        f"{q[49] * 1000:.0f}",
        f"{q[94] * 1000:.0f}",
        f"{ordered[-1] * 1000:.0f}",
    )
