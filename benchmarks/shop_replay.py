"""A shop's order log replayed into the whole suite (issue #16, targets 1, 4 and 6).

    python benchmarks/shop_replay.py [--orders 70000] [--customers 24000] [--refunds 0.02]
                                     [--without S] [--profile SERVICE] [--py-spy PATH]

On a private stack as `make up` starts it by default (Apache Kafka, the Rust SecantusDB server,
a mail catcher, and archive, tickets, loyalty, notify and relations each as its own process,
notify's bulk topics in a replica of its own, `notify-bulk`: `stack.REPLICAS`):

1. the customers register on `members.v1` (as a real shop's member system has them), and the
   script waits until archive and loyalty have committed them;
2. `--orders` `order.placed` over those customers (Zipf-like: a Pareto weight per customer, so a
   few buy often and most once or twice; times ascending over half a year), with `--refunds` of
   them partly refunded later in the log (`order.refunded`), all produced with `kcat -z lz4`
   (librdkafka, the murmur2 partitioner Java and aiokafka clients use);
3. timed from the first send until archive and loyalty have *both committed everything*: their
   consumer groups' committed offsets equal the end offsets of every topic they consume, and
   their outboxes are drained (loyalty's `points.earned` are on `loyalty.v1`, which the archive
   consumes too, so the archive is done only once it has read them);
4. then waited until every other service has committed everything too (relations and notify
   yield the cores to the ledgers, so they may trail them): that time is printed too, and the
   CPU figures run until then, so they hold every service's whole work on the orders.

Prints: the time, the rate, each service's CPU seconds and CPU ms per order-log event over the
orders phase (target 4 counts archive and loyalty) and the store's and the broker's, peak RSS
(target 6), the load average (the machine is shared: only side-by-side runs compare) and how
many times each service's consumer retried a step after a transient failure (a write conflict:
the batch is applied again). Every 10 s while it waits it prints each service's lag, by topic,
and the share of a core each process and the store used since the line before. Then it checks
nothing was lost or doubled:
every customer's order count and net spend in the archive, and in loyalty one `earn` ledger entry
per order and one `reverse` per refund, every balance equal to the sum of its ledger entries.

`--without NAME` (notify, tickets or relations) leaves a service out: what it costs the store and
the others. `--json PATH` also writes the figures (`issue16_targets.py` reads them).

`--profile NAME` runs `py-spy record --format raw` on that process (a service, or a replica such
as `notify-bulk`, which does notify's work on the orders) for the orders phase and
writes the flame input next to the printout (`shop_replay-NAME.txt`). A service other than archive
and loyalty (notify: `points.earned` into its digests) is then waited for too, so its CPU figure
covers all its work on the orders (and the orders phase starts once its welcome e-mails are
sent): the time printed is then until all three have committed.

The orders are dated over the half year before the run. Notify records a customer message whose
cause is more than 3 days old as `stale` and mails nothing (ADR 0023), so by default the orders'
promotions are not e-mailed, as for a shop loading its history; `CRM_NOTIFY_RULES__MAX_AGE_S=0`
in the environment (the services inherit it) mails them, as live traffic of the same size would.

`--settled` measures notify's e-mails too: the orders phase starts once notify has sent its
welcome e-mails, and after archive and loyalty have committed everything it waits until notify
has nothing left to send and nothing in its outbox; the CPU figures then cover the e-mails too
(`tier_changed`), and the time until then is printed beside target 1's.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from benchutil import BenchStack, cpu_seconds, print_table, private_stack, rss_mb
from bson.decimal128 import Decimal128
from pymongo import AsyncMongoClient
from stack import REPLICAS, metric, start_mail_catcher
from stackutil import cloud_event, free_port, topic_partitions

from crm_contracts.topics import consumed_by

SERVICES = ("archive", "tickets", "loyalty", "notify", "relations")
TIMED = ("archive", "loyalty")
"""Whose committed offsets end the run (target 1)."""


# -- the shop's log ------------------------------------------------------------------------------
@dataclass
class Shop:
    run: str
    customers: list[str]
    registrations: list[tuple[str, bytes]] = field(default_factory=list)
    log: list[tuple[str, bytes]] = field(default_factory=list)
    """`order.placed` and `order.refunded`, in the order they are produced."""
    orders: Counter[str] = field(default_factory=Counter)
    refunds: Counter[str] = field(default_factory=Counter)
    net: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))


def shop(run: str, orders: int, customers: int, refund_share: float) -> Shop:
    rng = random.Random(16)
    ids = [f"{run}-c{n:05d}" for n in range(customers)]
    out = Shop(run, ids)
    start = datetime.now(UTC) - timedelta(days=183)
    for n, customer in enumerate(ids):
        data = {
            "name": f"顾客{n}",
            "email": f"c{n}@{run}.example.com",
            "phone": f"138{n:08d}",
            "source": "shop",
        }
        out.registrations.append((customer, cloud_event("customer.registered", customer, data)))
    # Zipf-like: a Pareto(2) weight per customer; the heaviest buys a few hundred times.
    weights = [rng.paretovariate(2.0) for _ in ids]
    buyers = rng.choices(ids, weights=weights, k=orders)
    step = timedelta(days=180) / orders
    pending: list[tuple[int, str, bytes]] = []  # (index in the log to go at, key, event)
    for n, customer in enumerate(buyers):
        at = start + step * n
        order_id = f"{run}-o{n}"
        amount = Decimal(rng.randrange(500, 200_000)) / 100
        placed = {"order_id": order_id, "amount": str(amount), "currency": "CNY", "channel": "web"}
        out.log.append((customer, cloud_event("order.placed", customer, placed, time=at)))
        out.orders[customer] += 1
        out.net[customer] += amount
        if rng.random() < refund_share:  # a part refunded, some orders later in the log
            part = (amount / 2).quantize(Decimal("0.01"))
            refund = {"order_id": order_id, "amount": str(part), "reason": "damaged"}
            later = at + step * 50
            event = cloud_event("order.refunded", customer, refund, time=later)
            pending.append((n + 50, customer, event))
            out.refunds[customer] += 1
            out.net[customer] -= part
        while pending and pending[0][0] <= n:
            _, key, event = pending.pop(0)
            out.log.append((key, event))
    out.log.extend((key, event) for _, key, event in pending)
    return out


def kcat_produce(bootstrap: str, topic: str, messages: list[tuple[str, bytes]], path: Path) -> None:
    """Produce `key<TAB>value` lines with kcat, lz4-compressed, acks=all, idempotent."""
    with path.open("wb") as out:
        for key, value in messages:
            out.write(key.encode() + b"\t" + value + b"\n")
    command = [
        "kcat", "-P", "-b", bootstrap, "-t", topic, "-z", "lz4", "-K", "\t", "-l", str(path),
        "-X", "enable.idempotence=true", "-X", "partitioner=murmur2_random",
        "-X", "linger.ms=20",
    ]  # fmt: skip
    subprocess.run(command, check=True)


# -- watching the groups -------------------------------------------------------------------------
async def lag(bootstrap: str, groups: dict[str, str]) -> dict[str, Counter[str]]:
    """Per service and topic: end offsets minus the group's committed offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        out = {}
        for name, group in groups.items():
            partitions = await topic_partitions(bootstrap, [t.name for t in consumed_by(name)])
            ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
            committed = await admin.list_consumer_group_offsets(group)
            behind: Counter[str] = Counter()
            for tp, end in ends.items():
                behind[tp.topic] += end - (committed[tp].offset if tp in committed else 0)
            out[name] = behind
        return out
    finally:
        await consumer.stop()
        await admin.close()


def lag_text(by_topic: Counter[str]) -> str:
    """A service's lag, by topic where it is behind on several: `90,357 (orders.v1 40,404, ...)`."""
    behind = {topic: n for topic, n in by_topic.items() if n}
    by = ", ".join(f"{topic} {n:,}" for topic, n in behind.items())
    return f"{by_topic.total():,}" + (f" ({by})" if len(behind) > 1 else "")


class Committed(NamedTuple):
    """What `wait_committed` saw: peak RSS per service, the load averages, and when each service
    was first caught up (its lag may grow again after that, as the archive's does with
    loyalty's events, so those times are not the end)."""

    peak: dict[str, float]
    loads: list[float]
    caught: dict[str, float]


def wait_committed(
    bench: BenchStack, groups: dict[str, str], ports: dict[str, int], pids: dict[str, int]
) -> Committed:
    """Poll until the `groups` have no lag and their outboxes are drained. Every 10 s it prints
    each lag, by topic where a service is behind on several, and the share of a core each
    process and the store used since the last line."""
    begin = time.monotonic()
    peak = dict.fromkeys(pids, 0.0)
    loads: list[float] = []
    caught: dict[str, float] = {}
    last_print = begin
    watched = {**pids, "store": bench.store_pid}
    last_cpu = {name: cpu_seconds(pid) for name, pid in watched.items()}
    while True:
        lags = asyncio.run(lag(bench.bootstrap, groups))
        backlog = {name: metric(ports[name], "crm_outbox_backlog") for name in groups}
        for name, pid in pids.items():
            peak[name] = max(peak[name], rss_mb(pid))
        loads.append(os.getloadavg()[0])
        for name in groups:
            if name not in caught and not lags[name].total() and not backlog[name]:
                caught[name] = time.monotonic() - begin
        if not any(by_topic.total() for by_topic in lags.values()) and not any(backlog.values()):
            return Committed(peak, loads, caught)
        if time.monotonic() - last_print > 10:
            now, cpu = time.monotonic(), {name: cpu_seconds(pid) for name, pid in watched.items()}
            shares = ", ".join(
                f"{name} {(cpu[name] - last_cpu[name]) / (now - last_print):.0%}" for name in cpu
            )
            last_print, last_cpu = now, cpu
            behind = ", ".join(f"{name} {lag_text(by_topic)}" for name, by_topic in lags.items())
            print(
                f"  {last_print - begin:5.0f} s: lag {behind}; outbox {backlog}; CPU {shares}",
                flush=True,
            )
        time.sleep(0.25)


def wait_settled(port: int, timeout_s: float = 1200) -> float:
    """Wait until notify has nothing waiting to be sent and nothing in its outbox: seconds."""
    begin = time.monotonic()
    while time.monotonic() - begin < timeout_s:
        if not metric(port, "crm_notifications_waiting", "crm_outbox_backlog"):
            return time.monotonic() - begin
        time.sleep(0.5)
    raise SystemExit(f"notify still had messages waiting after {timeout_s:.0f} s")


async def notify_messages(bench: BenchStack, database: str, since: datetime) -> dict[str, int]:
    """Notify's notifications made since `since`, by "template/status"."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(bench.mongodb_url, tz_aware=True)
    try:
        pipeline: list[dict[str, Any]] = [
            {"$match": {"created_at": {"$gte": since}}},
            {"$group": {"_id": {"t": "$template", "s": "$status"}, "n": {"$sum": 1}}},
        ]
        rows = [row async for row in await client[database]["notifications"].aggregate(pipeline)]
        return {
            f"{r['_id']['t']}/{r['_id']['s']}": int(r["n"])
            for r in sorted(rows, key=lambda r: -int(r["n"]))
        }
    finally:
        await client.close()


# -- nothing lost, nothing doubled ---------------------------------------------------------------
async def verify(bench: BenchStack, databases: dict[str, str], sent: Shop) -> list[str]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(bench.mongodb_url)
    problems: list[str] = []
    try:
        archive = client[databases["archive"]]["customers"]
        seen = 0
        async for doc in archive.find({}, {"order_count": 1, "net_spent": 1}):
            customer = doc["_id"]
            if customer not in sent.net:
                continue
            seen += 1
            spent = doc["net_spent"]
            spent = spent.to_decimal() if isinstance(spent, Decimal128) else Decimal(spent)
            if doc.get("order_count", 0) != sent.orders[customer] or spent != sent.net[customer]:
                problems.append(
                    f"archive {customer}: {doc.get('order_count')} orders, {spent} spent; "
                    f"sent {sent.orders[customer]}, {sent.net[customer]}"
                )
        if seen != len(sent.net):
            problems.append(f"archive: {seen} customers with orders, sent {len(sent.net)}")
        ledger = client[databases["loyalty"]]["ledger"]
        kinds: dict[str, Counter[str]] = {"earn": Counter(), "reverse": Counter()}
        points: Counter[str] = Counter()
        async for entry in ledger.find({}, {"customer_id": 1, "kind": 1, "points": 1}):
            points[entry["customer_id"]] += entry["points"]
            if entry["kind"] in kinds:
                kinds[entry["kind"]][entry["customer_id"]] += 1
        if kinds["earn"] != sent.orders:
            problems.append(
                f"loyalty: {kinds['earn'].total()} earn entries, sent {sent.orders.total()} orders"
            )
        if kinds["reverse"] != sent.refunds:
            problems.append(
                f"loyalty: {kinds['reverse'].total()} reversals, sent {sent.refunds.total()}"
            )
        accounts = client[databases["loyalty"]]["accounts"]
        async for account in accounts.find({}, {"balance": 1, "debt": 1}):
            held = account["balance"] - account.get("debt", 0)
            if held != points[account["_id"]]:
                problems.append(
                    f"loyalty {account['_id']}: balance {held}, ledger {points[account['_id']]}"
                )
    finally:
        await client.close()
    return problems[:20]


# -- the run -------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=70_000)
    parser.add_argument("--customers", type=int, default=24_000)
    parser.add_argument("--refunds", type=float, default=0.02, help="share of orders refunded")
    parser.add_argument(
        "--profile", choices=[*SERVICES, *REPLICAS], help="py-spy record this process's orders"
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=[s for s in SERVICES if s not in TIMED],
        help="leave this service out (what it costs the store; not target 1's setting)",
    )
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument(
        "--settled",
        action="store_true",
        help="measure until notify has sent every e-mail the orders caused",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the figures here (issue16_targets.py)"
    )
    args = parser.parse_args()
    if shutil.which("kcat") is None:
        sys.exit("kcat is needed (apt-get install kcat)")
    run = f"shop{int(time.time())}"
    sent = shop(run, args.orders, args.customers, args.refunds)
    print(
        f"{len(sent.registrations):,} registrations; {len(sent.log):,} order-log events "
        f"({sent.orders.total():,} orders over {len(sent.orders):,} customers, the busiest "
        f"{max(sent.orders.values())} orders; {sent.refunds.total():,} refunds)",
        flush=True,
    )
    with private_stack() as bench:
        mail_port = free_port()
        mail = start_mail_catcher(bench.workdir / "mail", mail_port)
        bench.pids.append(mail.pid)
        ports: dict[str, int] = {}
        pids: dict[str, int] = {}
        running = [name for name in SERVICES if name not in args.without]
        groups = {name: f"{name}-{run}" for name in running}
        databases = {name: f"crm_{name}_{run}" for name in running}
        for name in running:
            prefix = f"CRM_{name.upper()}_"
            env = {
                f"{prefix}DATABASE": databases[name],
                f"{prefix}CONSUMER_GROUP": groups[name],
                "CRM_NOTIFY_SMTP_PORT": str(mail_port),
            }
            for process, (port, proc) in bench.start_as_deployed(name, env).items():
                ports[process], pids[process] = port, proc.pid  # notify and notify-bulk
        timed = {name: groups[name] for name in TIMED}
        if args.profile:
            service = REPLICAS[args.profile].service if args.profile in REPLICAS else args.profile
            timed[service] = groups[service]

        begin = time.monotonic()
        kcat_produce(bench.bootstrap, "members.v1", sent.registrations, bench.workdir / "m.txt")
        wait_committed(bench, timed, ports, pids)
        registered_s = time.monotonic() - begin
        print(f"registrations committed by archive and loyalty in {registered_s:.1f} s", flush=True)
        settle = args.settled and "notify" in running
        if "notify" in timed or settle:  # welcome e-mails sent: the orders phase measures orders
            settled_s = wait_settled(ports["notify"])
            print(f"notify's welcome e-mails sent {settled_s:.1f} s later", flush=True)

        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        servers = {"store": bench.store_pid, "kafka": bench.kafka_pid, "mail catcher": mail.pid}
        servers_before = {name: cpu_seconds(pid) for name, pid in servers.items()}
        profiler = None
        if args.profile:
            out = Path(f"shop_replay-{args.profile}.txt").resolve()
            profiler = subprocess.Popen(
                [args.py_spy, "record", "--rate", "200", "--format", "raw", "--nonblocking",
                 "-p", str(pids[args.profile]), "-o", str(out)],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
        load_at_start = os.getloadavg()
        orders_from = datetime.now(UTC)
        begin = time.monotonic()
        kcat_produce(bench.bootstrap, "orders.v1", sent.log, bench.workdir / "o.txt")
        produced_s = time.monotonic() - begin
        peak, loads, caught = wait_committed(bench, timed, ports, pids)
        elapsed = time.monotonic() - begin
        all_sent_s: float | None = None
        if settle:
            wait_settled(ports["notify"])
            all_sent_s = time.monotonic() - begin
        # Every service caught up: relations and notify may trail the ledgers (they yield the
        # cores, `NICE` in deploy/local/stack.py), and the CPU figures cover their work too.
        caught_up_s = elapsed
        if set(groups) - set(timed):
            trailing_peak = wait_committed(bench, groups, ports, pids).peak
            caught_up_s = time.monotonic() - begin
            peak = {name: max(mb, trailing_peak[name]) for name, mb in peak.items()}
        span = max(all_sent_s or elapsed, caught_up_s)  # what the CPU figures cover
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        servers_cpu = {
            name: cpu_seconds(pid) - servers_before[name] for name, pid in servers.items()
        }
        if profiler is not None:
            profiler.send_signal(2)  # SIGINT: py-spy writes its file and exits
            profiler.wait(60)
        retries = {
            name: metric(port, "crm_transient_retries_total") for name, port in ports.items()
        }
        problems = asyncio.run(verify(bench, databases, sent))
        messages = (
            asyncio.run(notify_messages(bench, databases["notify"], orders_from))
            if "notify" in databases
            else {}
        )

        events = len(sent.log)
        print_table(
            f"{events:,} order-log events ({sent.orders.total():,} orders, "
            f"{sent.refunds.total():,} refunds, {len(sent.orders):,} customers), lz4 via kcat: "
            f"produced in {produced_s:.1f} s; {' and '.join(timed)} committed everything "
            f"{elapsed:.1f} s after the first send ({events / elapsed:,.0f} events/s; first "
            "caught up: "
            + ", ".join(
                f"{name} {at:.1f} s" for name, at in sorted(caught.items(), key=lambda c: c[1])
            )
            + ")"
            + (
                f"; notify had sent every e-mail {all_sent_s:.1f} s after it"
                if all_sent_s is not None
                else ""
            )
            + f"; every service had committed everything {caught_up_s:.1f} s after it (the CPU "
            "figures are until the later of the two); "
            f"load average {load_at_start[0]:.1f} at the start, {max(loads):.1f} at most",
            ("process", "CPU s", "CPU ms/event", "CPU share", "peak RSS MB"),
            [
                *(
                    (
                        name,
                        f"{cpu[name]:.1f}",
                        f"{cpu[name] * 1000 / events:.3f}",
                        f"{cpu[name] / span:.0%}",
                        f"{peak[name]:.0f}",
                    )
                    for name in pids
                ),
                *(
                    (
                        name,
                        f"{used:.1f}",
                        f"{used * 1000 / events:.3f}",
                        f"{used / span:.0%}",
                        "-",
                    )
                    for name, used in servers_cpu.items()
                ),
            ],
        )
        print(
            "\nconsumer steps retried after a transient failure (a write conflict, the store or "
            "broker away; crm_transient_retries_total), the whole run: "
            + ", ".join(f"{name} {count:,.0f}" for name, count in retries.items())
        )
        print(
            "\nnotify's messages decided during the orders phase, by template and status: "
            + (", ".join(f"{key} {count:,}" for key, count in messages.items()) or "none")
        )
        if args.json:
            figures = {
                "events": events,
                "registered_s": registered_s,
                "committed_s": elapsed,
                "settled_s": all_sent_s,
                "caught_up_s": caught_up_s,
                "cpu_ms_per_event": {name: cpu[name] * 1000 / events for name in pids}
                | {name: used * 1000 / events for name, used in servers_cpu.items()},
                "peak_rss_mb": peak,
                "load": [load_at_start[0], max(loads)],
                "problems": problems,
            }
            args.json.write_text(json.dumps(figures, indent=2))
        if problems:
            print("\nLOST OR DOUBLED:\n  " + "\n  ".join(problems))
            sys.exit(1)
        print(
            f"\nverified: {len(sent.orders):,} customers' order counts and net spend in the "
            f"archive; loyalty {sent.orders.total():,} earn and {sent.refunds.total():,} reverse "
            "entries, every balance the sum of its ledger"
        )


if __name__ == "__main__":
    main()
