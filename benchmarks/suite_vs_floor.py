"""Each service's ingest beside a floor and a naive baseline; end-to-end latency at a fixed offered
load; resident memory under that load. One run, one private stack, so the ratios hold on a noisy
machine.

    python benchmarks/suite_vs_floor.py [--orders 6000] [--complaints 1500] [--registrations 1000]
                                        [--rate 200] [--seconds 30] [--latency-only]
                                        [--deliver-interval-s S]
    CRM_STORE=python python benchmarks/suite_vs_floor.py   # on the Python server (default: Rust)

- **Floor**: a minimal aiokafka consumer that parses the same JSON and does one `insert_many` per
  batch into the same store (no validation, no idempotence, no transaction, no outbox).
- **Naive**: a FastStream subscriber handling one message at a time with one `insert_one` round
  trip per event.
- **Service**: the real service from a fresh consumer group, timed from its first handled batch
  (which is left out of the count) until every message in the topics it consumes is handled
  (applied, skipped as not its business, or dead-lettered).
- **Latency**: all four services run as the local stack runs them (notify's bulk topics in a
  replica of its own, `notify-bulk`); the complainers register and their welcome e-mails are
  sent (the time and rate are printed: notify's delivery throughput); then a producer offers
  `--rate` events/s for `--seconds`: orders (timed to their `points.earned` on `loyalty.v1`) and,
  one in twenty, complaints from registered customers (timed through tickets and notify to the
  acknowledgement e-mail's `notification.sent` on `notify.v1`, and split at `ticket.opened`).
  Orders notify nobody by design (points go into a daily digest). The same load runs for
  `--warmup-s` (default 5) first and is not counted: a fresh broker's and fresh services' first
  seconds under load are their start's cost (`--warmup-s 0` measures from cold).
- **CPU**: during the service's ingest, the CPU time of the service process and of the store
  process over the wall time (100% = one core busy): where the time goes; and the service's CPU
  per message it read ("svc ms/msg", issue #16's target 4 as the issue measured it).
- **Memory**: peak resident set of each service during the latency run.

Starts a private Apache Kafka + SecantusDB on free ports (or uses KAFKA_BOOTSTRAP_SERVERS /
MONGODB_URL) and an in-process SMTP server. Prints tables; docs/performance.md keeps a run.
"""

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import threading
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from benchutil import (
    BenchStack,
    cpu_seconds,
    customer_upserts,
    print_table,
    private_stack,
    rss_mb,
    time_ingest,
)
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pymongo import AsyncMongoClient
from stack import metric
from stackutil import (
    SmtpServer,
    cloud_event,
    commit_at_end,
    order_placed,
    produce,
    topic_partitions,
)

from crm_contracts.topics import consumed_by


# -- the workloads -------------------------------------------------------------------------------
def orders(run: str, n: int, customers: int) -> list[tuple[str, bytes]]:
    rng = random.Random(1)
    out = []
    for i in range(n):
        customer = f"{run}-c{rng.randrange(customers)}"
        amount = str(Decimal(rng.randrange(100, 100_000)) / 100)
        out.append((customer, order_placed(customer, f"{run}-o{i}", amount)))
    return out


def complaint(customer: str, complaint_id: str) -> bytes:
    data = {
        "complaint_id": complaint_id,
        "channel": "phone",
        "category": "delivery",
        "severity": "medium",
        "description": "包裹破损，请尽快处理",
    }
    return cloud_event("complaint.reported", customer, data)


def registration(customer: str) -> bytes:
    data = {"name": "李雷", "email": f"{customer}@example.com", "phone": "13800138000"}
    return cloud_event("customer.registered", customer, data)


# -- floor and naive ---------------------------------------------------------------------------
def reader(bench: BenchStack, topics: list[str], group: str) -> AIOKafkaConsumer:
    """A plain consumer of `topics` from their start, committing by hand (the floors' reader)."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bench.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


async def parsed_batches(
    consumer: AIOKafkaConsumer, total: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """The records' JSON, a fetch of up to 500 at a time, until `total` have been read."""
    done = 0
    while done < total:
        batches = await consumer.getmany(timeout_ms=500, max_records=500)
        parsed = [json.loads(r.value) for rs in batches.values() for r in rs if r.value]
        if parsed:
            yield parsed
            done += len(parsed)


async def floor(bench: BenchStack, topics: list[str], total: int, tag: str) -> float:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(bench.mongodb_url)
    collection = client["bench_floor"][tag]
    consumer = reader(bench, topics, f"floor-{tag}")
    begin = time.monotonic()
    await consumer.start()
    try:
        async for documents in parsed_batches(consumer, total):
            await collection.insert_many(documents, ordered=False)
            await consumer.commit()
        return time.monotonic() - begin
    finally:
        await consumer.stop()
        await client.close()


PUBLISHES = {"loyalty", "tickets", "notify"}
"""Services whose effects include events of their own (points, tickets, notifications)."""


async def essential(
    bench: BenchStack, topics: list[str], total: int, tag: str, publish: bool
) -> float:
    """Issue #16's essential floor: the fewest writes a service's effects need, done the plainest
    way on the same store. Per batch of up to 500: one unordered bulk upsert per customer (the
    subject; `$inc` of its events and amounts, `$min`/`$max` of their times), however many of
    that customer's events the batch holds, and one `insert_many` of one row per event (the
    timeline, ledger, ticket or notification rows); no transaction, no inbox, no outbox, no
    validation beyond JSON. With `publish` (loyalty, tickets, notify), one outbound event per
    message is produced to a scratch topic with `acks=all` before the offsets are committed.
    Notify's e-mails are not sent here: that is the SMTP server's work, not the store's."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(bench.mongodb_url)
    database = client["bench_essential"]
    customers, rows = database[f"{tag}_customers"], database[f"{tag}_rows"]
    consumer = reader(bench, topics, f"essential-{tag}")
    producer = AIOKafkaProducer(bootstrap_servers=bench.bootstrap, acks="all", linger_ms=5)
    if publish:
        admin = AIOKafkaAdminClient(bootstrap_servers=bench.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(f"essential-{tag}", 12, 1)])
        finally:
            await admin.close()
    await producer.start()
    if publish:  # every partition's leader known before the clock starts
        warm = [await producer.send(f"essential-{tag}", b"{}", partition=p) for p in range(12)]
        await asyncio.gather(*warm)
    begin = time.monotonic()
    await consumer.start()
    try:
        async for events in parsed_batches(consumer, total):
            per_customer: dict[str, dict[str, Any]] = {}
            for event in events:
                data = event.get("data") or {}
                figures = per_customer.setdefault(
                    str(event.get("subject")),
                    {"n": 0, "amount": Decimal(0), "first": event["time"], "last": event["time"]},
                )
                figures["n"] += 1
                with contextlib.suppress(ArithmeticError, TypeError, ValueError):
                    figures["amount"] += Decimal(str(data.get("amount", 0)))
                figures["first"] = min(figures["first"], event["time"])
                figures["last"] = max(figures["last"], event["time"])
            await customers.bulk_write(customer_upserts(per_customer), ordered=False)
            await rows.insert_many(
                [
                    {
                        "_id": e["id"],
                        "customer": e.get("subject"),
                        "type": e["type"],
                        "at": e["time"],
                    }
                    for e in events
                ],
                ordered=False,
            )
            if publish:
                sends = [
                    await producer.send(f"essential-{tag}", json.dumps(e).encode()) for e in events
                ]
                await asyncio.gather(*sends)
            await consumer.commit()
        return time.monotonic() - begin
    finally:
        await producer.stop()
        await consumer.stop()
        await client.close()


async def naive(bench: BenchStack, topics: list[str], total: int, tag: str) -> float:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(bench.mongodb_url)
    collection = client["bench_naive"][tag]
    broker = KafkaBroker(bench.bootstrap, logger=None)
    finished = asyncio.Event()
    count = 0

    @broker.subscriber(*topics, group_id=f"naive-{tag}", auto_offset_reset="earliest")
    async def handle(message: KafkaMessage) -> None:
        nonlocal count
        try:
            await collection.insert_one(json.loads(message.body))
        finally:  # counted even if it failed: the run must end
            count += 1
            if count >= total:
                finished.set()

    begin = time.monotonic()
    await broker.start()
    try:
        await finished.wait()
        return time.monotonic() - begin
    finally:
        await broker.stop()
        await client.close()


async def messages_in(bootstrap: str, topics: list[str]) -> int:
    partitions = await topic_partitions(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        return sum(ends.values())
    finally:
        await consumer.stop()


def service_ingest(
    bench: BenchStack, name: str, run: str, env: dict[str, str]
) -> tuple[int, float, float, float]:
    """(messages handled, seconds, service CPU s, store CPU s) for a fresh instance reading
    everything in its topics, from its first handled batch (`BenchStack.start_on_backlog`):
    what it handled by then is in neither the count nor the time."""
    prefix = f"CRM_{name.upper()}_"
    total = asyncio.run(messages_in(bench.bootstrap, [t.name for t in consumed_by(name)]))
    port, proc, before = bench.start_on_backlog(
        name,
        {
            f"{prefix}DATABASE": f"crm_{name}_{run}_ingest",
            f"{prefix}CONSUMER_GROUP": f"{name}-{run}-ingest",
            f"{prefix}SWEEPS_ENABLED": "false",
            **env,
        },
        HANDLED,
        total,
    )
    service_cpu, store_cpu = cpu_seconds(proc.pid), cpu_seconds(bench.store_pid)
    elapsed, _ = time_ingest(port, proc.pid, total, metric_names=HANDLED)
    service_cpu = cpu_seconds(proc.pid) - service_cpu
    store_cpu = cpu_seconds(bench.store_pid) - store_cpu
    proc.terminate()
    proc.wait(30)
    return total - before, elapsed, service_cpu, store_cpu


HANDLED = ("crm_events_processed_total", "crm_events_ignored_total", "crm_dlq_messages_total")


# -- latency at a fixed load -------------------------------------------------------------------
Latencies = tuple[list[float], int]
"""(latencies in seconds, how many were sent)."""


async def offered_load(
    bench: BenchStack, run: str, rate: float, seconds: float, complainers: list[str]
) -> tuple[Latencies, Latencies, Latencies, Latencies]:
    """Offer `rate` events/s for `seconds`; returns (latencies in seconds, how many sent) for
    orders, for complaints (to the e-mail sent), for complaints to `ticket.opened` (the tickets
    hop) and from `ticket.opened` to the e-mail sent (the notify hop, as the benchmark sees it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bench.bootstrap, enable_auto_commit=False)
    await consumer.start()
    partitions = await topic_partitions(bench.bootstrap, ["loyalty.v1", "tickets.v1", "notify.v1"])
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:
        await consumer.position(partition)
    producer = AIOKafkaProducer(
        bootstrap_servers=bench.bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    await producer.start()
    sent_orders: dict[str, float] = {}
    sent_complaints: dict[str, float] = {}
    seen: dict[str, float] = {}
    opened: dict[str, float] = {}
    sending = True

    async def receive() -> None:
        while sending or len(seen) < len(sent_orders) + len(sent_complaints):
            batches = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value)
                    data = event.get("data") or {}
                    if event["type"] == "points.earned" and data.get("order_id") in sent_orders:
                        seen.setdefault(data["order_id"], now)
                    elif event["type"] == "ticket.opened" and event["subject"] in sent_complaints:
                        opened.setdefault(event["subject"], now)
                    elif (
                        event["type"] == "notification.sent"
                        and data.get("template") == "ticket_ack"
                        and event["subject"] in sent_complaints
                    ):
                        seen.setdefault(event["subject"], now)

    receiver = asyncio.create_task(receive())
    rng = random.Random(2)
    begin = time.monotonic()
    n = 0
    try:
        while time.monotonic() - begin < seconds:
            due = begin + n / rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            if n % 20 == 19 and len(sent_complaints) < len(complainers):
                customer = complainers[len(sent_complaints)]
                value = complaint(customer, f"{run}-k{n}")
                sent_complaints[customer] = time.monotonic()
                await producer.send("callcenter.v1", value, key=customer.encode())
            else:
                customer = f"{run}-l{rng.randrange(5000)}"
                order_id = f"{run}-lo{n}"
                sent_orders[order_id] = time.monotonic()
                await producer.send(
                    "orders.v1", order_placed(customer, order_id, "66.00"), key=customer.encode()
                )
            n += 1
        await producer.flush()
        sending = False
        await asyncio.wait_for(receiver, timeout=120)
    except TimeoutError:
        pass
    finally:
        sending = False
        receiver.cancel()
        await producer.stop()
        await consumer.stop()
    orders_s = [seen[k] - t for k, t in sent_orders.items() if k in seen]
    complaints_s = [seen[k] - t for k, t in sent_complaints.items() if k in seen]
    opened_s = [opened[k] - t for k, t in sent_complaints.items() if k in opened]
    notify_s = [seen[k] - opened[k] for k in sent_complaints if k in seen and k in opened]
    return (
        (orders_s, len(sent_orders)),
        (complaints_s, len(sent_complaints)),
        (opened_s, len(sent_complaints)),
        (notify_s, len(sent_complaints)),
    )


def percentiles(times: list[float], sent: int) -> tuple[str, ...]:
    if len(times) < 2:
        return (f"{len(times)}/{sent}", "-", "-", "-", "-")
    q = statistics.quantiles(sorted(times), n=100)
    ms = [f"{v * 1000:.0f}" for v in (q[49], q[94], q[98], max(times))]
    return (f"{len(times)}/{sent}", *ms)


def p99(times: list[float], sent: int) -> float | None:
    """The 99th percentile in seconds, counting what never arrived as infinitely late; None
    when fewer than two arrived."""
    if len(times) < 2:
        return None
    if len(times) < sent * 0.99:
        return float("inf")
    return statistics.quantiles(sorted(times), n=100)[98]


def welcomes_sent(notify_port: int, expected: int, timeout_s: float = 600.0) -> tuple[float, float]:
    """(notifications finished, seconds) once notify has finished `expected` (or timed out)."""
    begin = time.monotonic()
    finished = 0.0
    while time.monotonic() - begin < timeout_s:
        finished = metric(notify_port, "crm_notifications_total")
        if finished >= expected:
            break
        time.sleep(0.2)
    return finished, time.monotonic() - begin


class MemoryWatch:
    """Samples each process's resident set every 0.5 s; keeps the peak."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self.running = True
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def watch(self) -> None:
        while self.running:
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mb(pid))
            time.sleep(0.5)

    def stop(self) -> dict[str, float]:
        self.running = False
        self.thread.join()
        return self.peak


def ingest(bench: BenchStack, run: str, notify_env: dict[str, str]) -> dict[str, dict[str, float]]:
    """Each service alone, beside the floor, the essential floor and the naive baseline; prints
    the table and returns each service's figures (events/s, and its ratios)."""
    rows = []
    figures: dict[str, dict[str, float]] = {}
    # The broker's group coordinator is made on the first group's request: not in a floor's time.
    asyncio.run(commit_at_end(bench.bootstrap, f"warm-{run}"))
    # One service at a time: the floors and the naive baseline read exactly the messages
    # the service will read (its topics, as they are now), then the service does.
    for name in ("archive", "loyalty", "tickets", "notify"):
        topics = [t.name for t in consumed_by(name)]
        total = asyncio.run(messages_in(bench.bootstrap, topics))
        floor_rate = total / asyncio.run(floor(bench, topics, total, f"{run}_{name}"))
        essential_rate = total / asyncio.run(
            essential(bench, topics, total, f"{run}_{name}", name in PUBLISHES)
        )
        naive_rate = total / asyncio.run(naive(bench, topics, total, f"{run}_{name}"))
        handled, seconds, service_cpu, store_cpu = service_ingest(
            bench, name, run, notify_env if name == "notify" else {}
        )
        rate = handled / seconds
        figures[name] = {
            "rate": rate,
            "floor": floor_rate,
            "essential": essential_rate,
            "naive": naive_rate,
            "x_essential": rate / essential_rate,
            "x_floor": rate / floor_rate,
            "x_naive": rate / naive_rate,
            "cpu_ms_per_message": service_cpu * 1000 / handled,
        }
        rows.append(
            (
                name,
                handled,
                f"{rate:.0f}",
                f"{essential_rate:.0f}",
                f"{floor_rate:.0f}",
                f"{naive_rate:.0f}",
                f"{rate / essential_rate:.2f}",
                f"{rate / floor_rate:.2f}",
                f"{rate / naive_rate:.1f}",
                f"{service_cpu / seconds:.0%}",
                f"{figures[name]['cpu_ms_per_message']:.3f}",
                f"{store_cpu / seconds:.0%}",
            )
        )
    print_table(
        "Ingest of everything in each service's topics, beside the essential floor (one bulk "
        "upsert per customer and one insert of the rows per batch), the raw floor (one "
        "insert_many) and the naive baseline reading the same messages",
        (
            "service",
            "messages",
            "service/s",
            "essential/s",
            "floor/s",
            "naive/s",
            "x essential",
            "x floor",
            "x naive",
            "svc CPU",
            "svc ms/msg",
            "store CPU",
        ),
        rows,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=6_000)
    parser.add_argument("--complaints", type=int, default=1_500)
    parser.add_argument("--registrations", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--deliver-interval-s",
        type=float,
        default=None,
        help="notify's delivery sweep interval in the latency run (default: the service's own)",
    )
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=5.0,
        help="offer the same load this long before the timed run, not counted (0: from cold)",
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="skip the ingest table: only the latency and memory under the offered load",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the figures here (issue16_targets.py)"
    )
    args = parser.parse_args()
    run = f"b{int(time.time())}"
    results: dict[str, Any] = {
        "rate": args.rate,
        "seconds": args.seconds,
        "warmup_s": args.warmup_s,
    }
    smtp = SmtpServer()
    smtp.start()
    try:
        with private_stack() as bench:
            workloads = {
                "orders.v1": orders(run, args.orders, args.orders // 5),
                "callcenter.v1": [
                    (f"{run}-k{i % 500}", complaint(f"{run}-k{i % 500}", f"{run}-k{i}"))
                    for i in range(args.complaints)
                ],
                "members.v1": [
                    (f"{run}-m{i}", registration(f"{run}-m{i}")) for i in range(args.registrations)
                ],
            }
            notify_env = {"CRM_NOTIFY_SMTP_PORT": str(smtp.port)}
            if not args.latency_only:
                for topic, messages in workloads.items():
                    asyncio.run(produce(bench.bootstrap, topic, messages))
                results["ingest"] = ingest(bench, run, notify_env)

            # All four services, started at the end of every topic, under a fixed load.
            pids: dict[str, int] = {}
            ports: dict[str, int] = {}
            complainers = [f"{run}-p{i}" for i in range(int(args.rate * args.seconds / 20) + 1)]
            warm = [f"{run}-w{i}" for i in range(int(args.rate * args.warmup_s / 20) + 1)]
            for name in ("archive", "tickets", "loyalty", "notify"):
                prefix = f"CRM_{name.upper()}_"
                group = f"{name}-{run}-live"
                asyncio.run(commit_at_end(bench.bootstrap, group))
                env = {
                    f"{prefix}DATABASE": f"crm_{name}_{run}_live",
                    f"{prefix}CONSUMER_GROUP": group,
                    f"{prefix}SWEEPS_ENABLED": "true",
                }
                if name == "notify":
                    env |= notify_env
                    if args.deliver_interval_s is not None:
                        env["CRM_NOTIFY_DELIVER_INTERVAL_S"] = str(args.deliver_interval_s)
                for process, (port, proc) in bench.start_as_deployed(name, env).items():
                    ports[process], pids[process] = port, proc.pid  # notify and notify-bulk
            asyncio.run(
                produce(
                    bench.bootstrap,
                    "members.v1",
                    [(c, registration(c)) for c in complainers + warm],
                )
            )
            # The complainers' welcomes are sent before the load starts: the latency is the
            # steady state's, not that of the 200 e-mails per minute of load queued behind them.
            welcomes, burst_s = welcomes_sent(ports["notify"], len(complainers) + len(warm))
            print(
                f"\n{welcomes:.0f} welcome e-mails (the complainers' registrations) sent in "
                f"{burst_s:.1f} s ({welcomes / burst_s:.0f}/s), before the load"
            )
            if args.warmup_s > 0:
                # The same load for a few seconds first, not counted: the first orders and
                # complaints a fresh broker and fresh services ever handle wait on their
                # warm-up (code loaded and compiled, connections opened), which is a start's
                # cost, not the steady state's. `--warmup-s 0` measures from cold.
                asyncio.run(offered_load(bench, f"{run}w", args.rate, args.warmup_s, warm))
                time.sleep(3)
            watch = MemoryWatch(pids)
            order_run, complaint_run, opened_run, notify_run = asyncio.run(
                offered_load(bench, run, args.rate, args.seconds, complainers)
            )
            peaks = watch.stop()
            results["p99_s"] = {
                "order_points": p99(*order_run),
                "complaint_email": p99(*complaint_run),
            }
            results["peak_rss_mb"] = peaks
            print_table(
                f"End-to-end latency at {args.rate:.0f} events/s offered for {args.seconds:.0f} s"
                + (
                    f", after {args.warmup_s:.0f} s of the same load not counted"
                    if args.warmup_s > 0
                    else ", from cold"
                ),
                ("path", "answered/sent", "p50 ms", "p95 ms", "p99 ms", "max ms"),
                [
                    ("order -> points.earned", *percentiles(*order_run)),
                    ("complaint -> ticket.opened", *percentiles(*opened_run)),
                    ("ticket.opened -> ack e-mail sent", *percentiles(*notify_run)),
                    ("complaint -> ack e-mail sent", *percentiles(*complaint_run)),
                ],
            )
            print_table(
                "Peak resident memory under that load",
                ("service", "peak RSS MB"),
                [(name, f"{peak:.0f}") for name, peak in peaks.items()],
            )
    finally:
        smtp.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
