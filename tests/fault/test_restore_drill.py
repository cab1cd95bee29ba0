"""The restore drill (issue #18, ADR 0013): traffic, `crm backup` while it is processed, more
traffic with an erasure, the services stopped and their databases wiped, `crm restore`, the
services started again. Every figure must equal the one the services had before the wipe, the
erased customer must stay erased (its keys destroyed by the restore before any service starts),
and once the key backup's retention has passed the old data backup no longer opens the erased
customer's name. Figures: the archive's per-customer orders and totals, loyalty balances and
ledger entries, one ticket per complaint, notify's messages per customer, template and status
(but the `retention` ones, see `Figures.read`), every service's key tombstones."""

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from stackutil import (
    FaultStack,
    ServiceProcess,
    SmtpServer,
    cloud_event,
    eventually,
    local_stack,
    order_placed,
    produce,
    unique,
)

from crm_cli import backup
from crm_runtime.crypto import KeyRing, cipher_from_document

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(1200)]
SERVICES = ("archive", "tickets", "loyalty", "notify")
TIERS = json.dumps({"standard": 0, "silver": 10**9, "gold": 2 * 10**9, "diamond": 3 * 10**9})


def start_services(stack: FaultStack, smtp: SmtpServer) -> dict[str, ServiceProcess]:
    settings: dict[str, dict[str, str]] = {
        "archive": {"batch_max_records": "100"},
        "tickets": {"batch_max_records": "100", "sweeps_enabled": "false"},
        "loyalty": {
            "batch_max_records": "100",
            "sweeps_enabled": "false",
            "rules__tier_thresholds": TIERS,
            "rules__welcome_bonus": "0",
        },
        "notify": {
            "smtp_host": "127.0.0.1",
            "smtp_port": str(smtp.port),
            "deliver_interval_s": "0.3",
        },
    }
    services = {name: ServiceProcess.isolated(name, stack, **env) for name, env in settings.items()}
    for service in services.values():
        service.start()
    return services


def crm(
    stack: FaultStack, services: dict[str, ServiceProcess], *args: str, exit_code: int = 0
) -> str:
    """Run the `crm` command as an operator would, with the services' databases and groups."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "MONGODB_URL": stack.mongodb_url,
        **{
            k: v
            for s in services.values()
            for k, v in s.env.items()
            if k.endswith(("_DATABASE", "_CONSUMER_GROUP"))
        },
    }
    done = subprocess.run(
        [str(Path(sys.executable).with_name("crm")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == exit_code, f"crm {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


class Figures:
    """What the services hold for this run's customers, read from their databases."""

    def __init__(
        self, stack: FaultStack, services: dict[str, ServiceProcess], run: str, raced: set[str]
    ) -> None:
        self.raced = raced
        """Customers registered in the same send as their complaints: whether notify had their
        address when a ticket's acknowledgement came depends on the order it read two topics
        in (members.v1, tickets.v1), live as after a restore; their messages are counted, not
        their statuses."""
        self.client: MongoClient[dict[str, Any]] = MongoClient(stack.mongodb_url, tz_aware=True)
        self.db = {
            name: self.client[s.env[f"CRM_{name.upper()}_DATABASE"]] for name, s in services.items()
        }
        self.mine = {"$regex": f"^{run}-"}

    def read(self) -> dict[str, Any]:
        archive, loyalty = self.db["archive"], self.db["loyalty"]
        return {
            "archive": {
                d["_id"]: (
                    d.get("order_count"),
                    str(d.get("net_spent")),
                    d.get("first_order_at"),
                    d.get("last_order_at"),
                    d.get("erased_at") is not None,
                )
                for d in archive["customers"].find({"_id": self.mine})
            },
            "balances": {
                d["_id"]: d["balance"] for d in loyalty["accounts"].find({"_id": self.mine})
            },
            "ledger": Counter(
                d["customer_id"] for d in loyalty["ledger"].find({"customer_id": self.mine})
            ),
            "tickets": sorted(
                (d["customer_id"], d["complaint_id"])
                for d in self.db["tickets"]["tickets"].find({"customer_id": self.mine})
            ),
            # Not the `retention` messages: they answer the archive's churn-risk transitions,
            # whose event ids derive from the last event of the batch (crm_archive.handlers
            # `last_cause`), so a re-consumption cut into other batches mints new ones. A
            # restore shows it; so would a redelivery after a crash. Left to the archive.
            "notifications": Counter(
                (
                    d["customer_id"],
                    d["template"],
                    "-" if d["customer_id"] in self.raced else d["status"],
                )
                for d in self.db["notify"]["notifications"].find(
                    {"customer_id": self.mine, "template": {"$ne": "retention"}}
                )
            ),
            "tombstones": {
                name: sorted(
                    d["_id"] for d in db["data_keys"].find({"_id": self.mine, "wrapped": None})
                )
                for name, db in self.db.items()
            },
        }

    def close(self) -> None:
        self.client.close()


def traffic(
    run: str, first: int, customers: range, orders: int, complaints: int, seed: int
) -> dict[str, list[tuple[str, bytes]]]:
    rng = random.Random(seed)
    members = [
        (
            f"{run}-{i}",
            cloud_event(
                "customer.registered",
                f"{run}-{i}",
                {"name": f"李雷{i}", "email": f"{run}-{i}@example.com"},
                event_id=f"{run}-reg{i}",
            ),
        )
        for i in customers
    ]
    order_messages = []
    for n in range(first, first + orders):
        customer = f"{run}-{rng.choice(customers)}"
        amount = Decimal(rng.randrange(100, 100_000)) / 100
        event = order_placed(customer, f"{run}-o{n}", str(amount), event_id=f"{run}-e{n}")
        order_messages.append((customer, event))
        if n % 25 == 0:
            order_messages.append((customer, event))  # a redelivery: same event id
    calls = []
    for n in range(first, first + complaints):
        customer = f"{run}-{rng.choice(customers)}"
        data = {
            "complaint_id": f"{run}-k{n}",
            "channel": "phone",
            "category": "delivery",
            "severity": "medium",
            "description": "包裹破损",
        }
        calls.append(
            (customer, cloud_event("complaint.reported", customer, data, event_id=f"{run}-c{n}"))
        )
    return {"members.v1": members, "orders.v1": order_messages, "callcenter.v1": calls}


def send(stack: FaultStack, messages: dict[str, list[tuple[str, bytes]]]) -> None:
    for topic, batch in messages.items():
        asyncio.run(produce(stack.bootstrap, topic, batch))


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def test_restore_after_a_wipe_equals_the_run_without_it_and_keeps_the_erased_erased(
    faulty: FaultStack, smtp: SmtpServer, tmp_path: Path
) -> None:
    run = unique("rd")
    erased = f"{run}-0"
    data_root, key_root = tmp_path / "backups", tmp_path / "key-backups"
    services = start_services(faulty, smtp)
    figures = Figures(faulty, services, run, {f"{run}-{i}" for i in range(40, 50)})
    ring = KeyRing.from_config(
        keys={}, keys_file=os.environ.get("CRM_MASTER_KEYS_FILE", str(local_stack.dev_keys_file()))
    )
    try:
        # 1. Traffic; the backup is taken while it is being processed.
        first = traffic(run, 0, range(40), 3000, 30, seed=18)
        send(faulty, {"members.v1": first.pop("members.v1")})
        customers = figures.db["archive"]["customers"]
        notifications = figures.db["notify"]["notifications"]
        welcomed = {"customer_id": erased, "template": "welcome", "status": "sent"}
        eventually(lambda: (customers.find_one({"_id": erased}) or {}).get("pii"), timeout=120)
        eventually(lambda: notifications.find_one(welcomed), timeout=120)
        send(faulty, first)
        ledger = figures.db["loyalty"]["ledger"]
        mine = {"customer_id": figures.mine}
        eventually(lambda: ledger.count_documents(mine) >= 300, timeout=180, interval=0.1)
        crm(
            faulty,
            services,
            "backup",
            "--to",
            str(data_root),
            "--keys-to",
            str(key_root),
            "--no-progress",
        )
        (data_dir,) = data_root.iterdir()
        ((_, first_keys),) = backup.key_backups(key_root)
        manifest = backup.Manifest.read(data_dir)
        in_snapshot = manifest.services["loyalty"].collections["ledger"].documents
        print(f"\nthe snapshot holds {in_snapshot} of 3000 orders in the ledger")

        # 2. More traffic, with an erasure of a customer the backup holds.
        second = traffic(run, 3000, range(30, 50), 600, 20, seed=19)
        second["members.v1"].append(
            (erased, cloud_event("customer.erasure_requested", erased, {}, event_id=f"{run}-erase"))
        )
        send(faulty, second)
        orders = 3600
        complaints = 50

        def settled() -> dict[str, Any]:
            now = figures.read()
            assert sum(now["ledger"].values()) == orders
            assert sum(c[0] or 0 for c in now["archive"].values()) == orders
            assert len(now["tickets"]) == complaints
            assert all(now["tombstones"][name] == [erased] for name in SERVICES)
            assert now["archive"][erased][4], "the archive marked the customer erased"
            messages = Counter(t for (_, t, s), n in now["notifications"].items() for _ in range(n))
            assert messages["welcome"] == 50, "one welcome per customer"
            assert messages["ticket_ack"] == complaints, "one acknowledgement per ticket"
            statuses = {s for (_, _, s) in now["notifications"]}
            assert statuses <= {"sent", "suppressed", "-"}, "every message sent or suppressed"
            for service in services.values():
                assert service.metric("crm_outbox_backlog") == 0
            return now

        eventually(settled, timeout=600, interval=1)
        time.sleep(2)  # anything doubled would land now
        live = settled()

        # 3. Disaster: the services stopped, their databases gone.
        for service in services.values():
            service.stop()
        for db in figures.db.values():
            figures.client.drop_database(db.name)

        # 4. Restore: the erasure since the snapshot is applied before any service starts.
        started = time.monotonic()
        out = crm(
            faulty, services, "restore", str(data_dir), "--keys-to", str(key_root), "--no-progress"
        )
        print(f"restored in {time.monotonic() - started:.1f} s: {out.strip()}")
        assert "1 customer(s) erased since the snapshot" in out, out
        for name, db in figures.db.items():
            key = db["data_keys"].find_one({"_id": erased})
            assert key is not None, f"{name}: a tombstone for the erased customer"
            assert key["wrapped"] is None, f"{name}: the key is destroyed"
        for service in services.values():
            service.start()
        started = time.monotonic()

        def caught_up() -> dict[str, Any]:
            now = figures.read()
            for part, figure in live.items():
                assert now[part] == figure, part
            return now

        restored = eventually(caught_up, timeout=300, interval=2)
        print(f"caught up {time.monotonic() - started:.0f} s after the services started")
        response = services["archive"].get(f"/customers/{erased}")
        assert response.status_code == 200, response.text
        assert response.json()["erased"] is True
        assert response.json()["profile"]["name"] is None

        # A restore over running services is refused before anything is dropped.
        refused = crm(
            faulty,
            services,
            "restore",
            str(data_dir),
            "--keys-to",
            str(key_root),
            "--drop",
            "--no-progress",
            exit_code=2,
        )
        assert "archive is running (consumer group" in refused, refused
        assert figures.read() == restored, "nothing dropped, nothing changed"

        # 5. The old backup: its key backup opens the erased customer's name until the
        # retention passes; then the only key backup left (taken after the erasure) does not.
        crm(
            faulty,
            services,
            "backup",
            "--to",
            str(data_root),
            "--keys-to",
            str(key_root),
            "--no-progress",
        )
        sealed = {
            d["_id"]: d["pii"]["name"]
            for d in backup.read_documents(data_dir / "archive" / "customers.bson")
            if d["_id"] in (erased, f"{run}-1")
        }

        def opened(customer: str) -> list[str | None]:
            names = []
            for path, keys in backup.key_backups(key_root):
                item = keys.services["archive"].collections["data_keys"]
                for doc in backup.read_documents(path / item.file):
                    if doc["_id"] == customer:
                        names.append(cipher_from_document(ring, doc).open("name", sealed[customer]))
            return names

        assert opened(erased) == ["李雷0", None], "within the retention the old key backup opens it"
        past = first_keys.taken_at + timedelta(days=30, seconds=1)
        crm(
            faulty,
            services,
            "backup",
            "prune",
            "--keys-to",
            str(key_root),
            "--key-retention",
            "30d",
            "--now",
            past.isoformat(),
        )
        assert opened(erased) == [None], "past the retention no key backup opens it"
        assert opened(f"{run}-1") == ["李雷1"], "a customer not erased still opens"
        print(f"restored {sum(restored['ledger'].values())} ledger entries, equal to the live run")
    finally:
        for service in services.values():
            service.stop()
        figures.close()
