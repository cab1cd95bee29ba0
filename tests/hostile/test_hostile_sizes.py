"""Hostile sizes on the real stack: one customer (or one report request) must never stop a service.

- An export of a customer with 20,000 timeline entries is streamed (chunked, one page of entries
  in memory at a time) and complete; the archive's resident memory grows by less than
  `EXPORT_GROWTH_MB` while it is sent, and stays under the suite's 200 MB target.
- Reports refuse a range longer than the cap (366 days) with a 422 that says so; within the cap
  their figures, computed by a database aggregation, equal what the former in-process loops
  computed from the same documents.
- A customer whose orders and complaints would have pushed its record past MongoDB's 16 MB limit
  keeps being applied: nothing is dead-lettered, the record stays small, its figures stay exact
  (an early order refunded, cancelled and announced again included), and its export lists every
  order.
- A ticket at its comment or history limit refuses more from people with a 409 that says so,
  and still takes the events (surveys) that come for it.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import bson
import httpx
import pytest
from pymongo import MongoClient
from stackutil import (
    AUTH,
    ServiceProcess,
    Stack,
    cloud_event,
    collect,
    eventually,
    order_placed,
    produce,
    send,
    unique,
)

pytestmark = [pytest.mark.hostile, pytest.mark.slow]

TIMELINE_ENTRIES = 20_000
EXPORT_GROWTH_MB = 25
"""Streamed, the export holds one page (500 entries, ~150 kB of JSON) and its encoder at a time:
a few MB. Built in memory, 20,000 entries (~6 MB of JSON) cost several times that as documents,
dicts, models and the encoded body at once (measured: see the report in the commit). 25 MB is an
eighth of the 200 MB resident-memory target per service: room for the allocator, not for a copy
of the customer's history."""
MEMORY_TARGET_MB = 200
MANY_ORDERS = 75_000
"""With 127-character order ids an embedded order is ~245 bytes of BSON: held in full, 75,000 of
them and the 3,000 complaints make a ~17.5 MB record, past MongoDB's 16 MiB document limit (the
server refuses it: "object to insert too large", code 10334)."""
LONG = "x" * 120  # order and complaint ids are up to 128 characters (crm_contracts Identifier)


# -- services -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def archive(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("archive", stack, sweeps_enabled="false").start()
    yield service
    service.stop()


@pytest.fixture
def tickets(stack: Stack) -> Iterator[ServiceProcess]:
    """Small limits (3 comments, 12 history lines) so the test reaches them quickly; the default
    limits keep the worst-case ticket under 16 MB (services/tickets/tests)."""
    service = ServiceProcess.isolated(
        "tickets",
        stack,
        clock_override_enabled="true",
        rules__calendar__opens="00:00",
        rules__calendar__closes="00:00",
        rules__calendar__working_weekdays=json.dumps(list(range(7))),
        rules__max_comments="3",
        rules__max_history="12",
    ).start()
    yield service
    service.stop()


@pytest.fixture
def loyalty(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("loyalty", stack, sweeps_enabled="false").start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def mongo(stack: Stack) -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongodb_url, tz_aware=True)
    yield client
    client.close()


def database(service: ServiceProcess) -> str:
    return service.env[f"CRM_{service.name.upper()}_DATABASE"]


# -- memory ---------------------------------------------------------------------------------------
def status_kb(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` figure in kB (VmRSS: resident now; VmHWM: the resident peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Make VmHWM start again from the current resident size (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def contact(customer: str, n: int) -> bytes:
    return cloud_event(
        "contact.logged",
        customer,
        {
            "contact_id": f"c{n}-{uuid.uuid4().hex}",
            "agent_id": "agent-007",
            "channel": "phone",
            "direction": "in",
            "topic": "where is my parcel",
            "duration_s": 95,
            "sentiment": 0.25,
        },
    )


def test_an_export_of_20000_timeline_entries_is_streamed_within_the_memory_target(
    stack: Stack, archive: ServiceProcess
) -> None:
    customer, small = unique("export"), unique("warm")
    send(
        stack,
        "members.v1",
        *[
            (c, cloud_event("customer.registered", c, {"name": "王大锤"}))
            for c in (customer, small)
        ],
    )
    asyncio.run(
        produce(
            stack.bootstrap,
            "callcenter.v1",
            [(customer, contact(customer, n)) for n in range(TIMELINE_ENTRIES)],
        )
    )

    def applied() -> bool:
        # The contacts (callcenter.v1) prove nothing of the registrations (members.v1), nor of
        # `small` (another key): wait for each.
        record = archive.get(f"/customers/{customer}").json()
        return bool(
            record.get("contacts") == TIMELINE_ENTRIES
            and record["profile"]["name"] is not None
            and archive.get(f"/customers/{small}").json().get("profile", {}).get("name")
        )

    eventually(applied, timeout=600, interval=2)
    assert archive.get(f"/customers/{small}/export").status_code == 200  # warm the route up
    assert archive.proc is not None
    pid = archive.proc.pid
    reset_peak(pid)
    before = status_kb(pid, "VmRSS")
    chunks = 0
    with httpx.stream(
        "GET", f"{archive.url}/customers/{customer}/export", headers=AUTH, timeout=300
    ) as response:
        assert response.status_code == 200
        headers = response.headers
        body = bytearray()
        for chunk in response.iter_bytes():
            chunks += 1
            body += chunk
    peak = status_kb(pid, "VmHWM")
    export = json.loads(body)
    entries = len(export["timeline"])
    growth_mb = (peak - before) / 1024
    print(
        f"\nexport of {entries} entries ({len(body) / 1e6:.1f} MB in {chunks} chunks): "
        f"RSS {before / 1024:.1f} MB before, peak {peak / 1024:.1f} MB, "
        f"growth {growth_mb:.1f} MB"
    )
    assert entries == TIMELINE_ENTRIES + 1  # the registration and every contact
    assert export["customer"]["contacts"] == TIMELINE_ENTRIES
    assert {e["type"] for e in export["timeline"]} == {"customer.registered", "contact.logged"}
    assert growth_mb < EXPORT_GROWTH_MB, f"the export cost {growth_mb:.1f} MB of memory"
    assert peak / 1024 < MEMORY_TARGET_MB
    assert headers.get("transfer-encoding") == "chunked", headers
    assert "content-length" not in headers


# -- reports --------------------------------------------------------------------------------------
def test_reports_refuse_a_range_over_the_cap_with_a_clear_message(tickets: ServiceProcess) -> None:
    until = datetime.now(UTC)
    for route in ("/reports/sla", "/reports/root-causes"):
        too_long = tickets.get(
            route, since=(until - timedelta(days=367)).isoformat(), until=until.isoformat()
        )
        assert too_long.status_code == 422, (route, too_long.text)
        message = too_long.json()["message"]
        assert "366 days" in message, message
        assert "367" in message, message
        at_cap = tickets.get(
            route, since=(until - timedelta(days=366)).isoformat(), until=until.isoformat()
        )
        assert at_cap.status_code == 200, (route, at_cap.text)
        assert tickets.get(route).status_code == 200  # the default: the last 30 days
        early = tickets.get(route, until="0001-01-02T00:00:00Z")  # no 30 days before it
        assert early.status_code == 422, early.text


def old_sla_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures as `/reports/sla` computed them in the process before (the oracle)."""
    firsts = [r["first_response_s"] for r in rows if r.get("first_response_s") is not None]
    resolutions = [r["resolution_s"] for r in rows if r.get("resolution_s") is not None]
    breached = sum(1 for r in rows if r.get("breached"))
    return {
        "tickets": len(rows),
        "breached": breached,
        "breach_rate": round(breached / len(rows), 4) if rows else None,
        "mean_first_response_s": round(sum(firsts) / len(firsts)) if firsts else None,
        "mean_resolution_s": round(sum(resolutions) / len(resolutions)) if resolutions else None,
    }


def old_root_causes(rows: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, dict[str, int]] = {}
    for d in rows:
        for cause in d.get("root_causes") or ["(unresolved)"]:
            row = table.setdefault(d["category"], {})
            row[cause] = row.get(cause, 0) + 1
    top = sorted(
        ((n, cat, cause) for cat, row in table.items() for cause, n in row.items()), reverse=True
    )[:10]
    return {
        "tickets": len(rows),
        "by_category": {c: dict(sorted(r.items())) for c, r in sorted(table.items())},
        "top": [{"category": c, "root_cause": k, "tickets": n} for n, c, k in top],
    }


def test_report_figures_from_the_database_equal_the_former_in_process_figures(
    stack: Stack,
    tickets: ServiceProcess,
    loyalty: ServiceProcess,
    mongo: MongoClient[dict[str, Any]],
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    agent = unique("agent")
    assert tickets.put(
        f"/agents/{agent}",
        {"name": "A", "queues": ["delivery", "service", "billing", "product"], "capacity": 100},
    ).status_code in (200, 201)
    categories = ["delivery", "service", "billing", "product"]
    severities = ["low", "medium", "high", "critical"]
    ids = []
    for n in range(16):
        created = tickets.post(
            "/tickets",
            {
                "customer_id": unique("rc"),
                "description": "报告",
                "category": categories[n % 4],
                "severity": severities[(n // 4) % 4],
            },
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    time.sleep(1.1)  # figures are whole seconds: a ticket resolved within one would count 0
    for n, ticket_id in enumerate(ids):
        if n % 3 == 0:
            assert tickets.post(f"/tickets/{ticket_id}/comment", {"text": "在查", "public": True})
        if n % 2 == 0:
            causes = [["carrier"], ["carrier", "packaging"], ["billing-bug"]][n % 3]
            assert (
                tickets.post(f"/tickets/{ticket_id}/resolve", {"root_causes": causes}).status_code
                == 200
            )
    later = datetime.now(UTC) + timedelta(days=3)
    assert tickets.post("/ops/sweeps/sla", at=later.isoformat()).status_code == 200
    until = datetime.now(UTC) + timedelta(minutes=1)
    window = {"since": since.isoformat(), "until": until.isoformat()}
    rows = list(
        mongo[database(tickets)]["tickets"].find({"opened_at": {"$gte": since, "$lt": until}})
    )
    assert len(rows) == 16
    assert any(r.get("breached") for r in rows)
    assert any(r.get("resolution_s") for r in rows)

    sla = tickets.get("/reports/sla", **window).json()
    assert sla["all"] == old_sla_summary(rows)
    assert sla["by_priority"] == {
        p: old_sla_summary([r for r in rows if r["priority"] == p])
        for p in ("P1", "P2", "P3", "P4")
        if any(r["priority"] == p for r in rows)
    }
    assert sla["by_category"] == {
        c: old_sla_summary([r for r in rows if r["category"] == c])
        for c in sorted({r["category"] for r in rows})
    }
    causes = tickets.get("/reports/root-causes", **window).json()
    assert {k: causes[k] for k in ("tickets", "by_category", "top")} == old_root_causes(rows)

    # loyalty: a few accounts with orders, a redemption, a refund
    customers = [unique("liab") for _ in range(4)]
    for n, customer in enumerate(customers):
        send(
            stack,
            "orders.v1",
            *[
                (customer, order_placed(customer, f"{customer}-o{i}", f"{100 * (n + i + 1)}.00"))
                for i in range(3)
            ],
        )

    def balances() -> list[int | None]:
        answers = [loyalty.get(f"/accounts/{c}") for c in customers]
        return [a.json()["balance"] if a.status_code == 200 else None for a in answers]

    eventually(lambda: balances() == [600, 900, 1200, 1500], timeout=60)
    redeemed = loyalty.post(
        f"/accounts/{customers[0]}/redemptions", {"points": 150}, headers={"Idempotency-Key": "r1"}
    )
    assert redeemed.status_code == 201, redeemed.text
    report = loyalty.get("/reports/liability").json()
    accounts = mongo[database(loyalty)]["accounts"]
    by_month: dict[str, int] = {}
    count = debt = 0
    for doc in accounts.find({"$or": [{"balance": {"$ne": 0}}, {"debt": {"$gt": 0}}]}):
        count += 1
        debt += int(doc.get("debt", 0))
        for lot in doc.get("lots", []):
            if lot["remaining"] > 0:
                by_month[lot["expiry_month"]] = by_month.get(lot["expiry_month"], 0) + int(
                    lot["remaining"]
                )
    assert report["accounts"] == count == 4
    assert report["outstanding_points"] == sum(by_month.values()) == 600 + 900 + 1200 + 1500 - 150
    assert report["debt_points"] == debt
    assert report["by_expiry_month"] == dict(sorted(by_month.items()))
    assert report["expiring_within_30_days"] == 0  # lots live 24 months


# -- arrays that grow with a customer's life ------------------------------------------------------
@pytest.mark.timeout(1800)  # 78,000 events of one customer (one partition), then its export
def test_a_customer_past_the_16_mb_record_keeps_being_applied_and_exact(
    stack: Stack, archive: ServiceProcess, mongo: MongoClient[dict[str, Any]]
) -> None:
    customer = unique("huge")
    start = (datetime.now(UTC) - timedelta(days=800)).replace(microsecond=0)
    first_id = f"{LONG}-o0"
    messages = [
        (
            customer,
            order_placed(customer, f"{LONG}-o{n}", "10.00", time=start + timedelta(minutes=15 * n)),
        )
        for n in range(MANY_ORDERS)
    ]
    started = time.monotonic()
    asyncio.run(produce(stack.bootstrap, "orders.v1", messages))
    complaints = [
        (
            customer,
            cloud_event(
                "complaint.reported",
                customer,
                {"complaint_id": f"{LONG}-k{n}", "channel": "phone", "description": "又坏了"},
                time=start + timedelta(minutes=15 * n),
            ),
        )
        for n in range(3_000)
    ]
    asyncio.run(produce(stack.bootstrap, "callcenter.v1", complaints))
    # Then, on the same keys: the first order refunded, cancelled and announced again under a new
    # event id, a duplicate of an early complaint, and one more order placed now.
    now = datetime.now(UTC).replace(microsecond=0)
    refund = {"order_id": first_id, "amount": "4.00"}
    send(
        stack,
        "orders.v1",
        (customer, cloud_event("order.refunded", customer, refund, time=now)),
        (customer, cloud_event("order.cancelled", customer, {"order_id": f"{LONG}-o1"}, time=now)),
        (customer, order_placed(customer, first_id, "10.00", time=start)),
        (customer, order_placed(customer, f"{LONG}-last", "99.00", time=now)),
    )
    again = {"complaint_id": f"{LONG}-k1", "channel": "phone", "description": "又坏了"}
    # A contact after the duplicate, on the same key and topic: once it counts, every complaint
    # before it (the duplicate too) was applied.
    send(
        stack,
        "callcenter.v1",
        (customer, cloud_event("complaint.reported", customer, again)),
        (customer, contact(customer, 0)),
    )
    expected_orders = MANY_ORDERS  # one cancelled, one more placed

    def applied() -> dict[str, Any] | None:
        # The count is MANY_ORDERS before the cancellation too: the last order placed (the last
        # event on orders.v1) and the contact (on callcenter.v1) say each topic is through.
        response = archive.get(f"/customers/{customer}")
        body = response.json() if response.status_code == 200 else {}
        value = body.get("value", {})
        last = value.get("last_order_at")
        done = (
            value.get("order_count") == expected_orders
            and last is not None
            and datetime.fromisoformat(last) == now
            and body.get("contacts") == 1
        )
        return body if done else None

    record = eventually(applied, timeout=900, interval=5)
    print(
        f"\n{MANY_ORDERS} orders and 3,000 complaints applied in {time.monotonic() - started:.0f} s"
    )
    value = record["value"]
    net = Decimal("10.00") * (MANY_ORDERS - 2) + Decimal("6.00") + Decimal("99.00")
    assert Decimal(value["net_spent"]) == net
    assert datetime.fromisoformat(value["first_order_at"]) == start
    assert datetime.fromisoformat(value["last_order_at"]) == now
    assert record["complaints"] == 3_000
    letters = asyncio.run(
        collect(
            stack.bootstrap,
            "archive.dlq.v1",
            lambda r: r.key == customer.encode(),
            until=lambda kept: bool(kept),
            timeout=15,
        )
    )
    assert letters == [], [dict(r.headers).get("x-dlq-reason") for r in letters]
    stored = mongo[database(archive)]["customers"].find_one({"_id": customer})
    assert stored is not None
    size = len(bson.encode(stored))
    assert size < 2 * 1024 * 1024, f"the record is {size / 1e6:.1f} MB"
    with httpx.stream(
        "GET", f"{archive.url}/customers/{customer}/export", headers=AUTH, timeout=600
    ) as response:
        assert response.status_code == 200
        export = json.loads(b"".join(response.iter_bytes()))
    assert len(export["orders"]) == MANY_ORDERS + 1  # every order, the cancelled one too
    first = next(o for o in export["orders"] if o["order_id"] == first_id)
    assert (first["amount"], first["refunded"], first["cancelled"]) == ("10.00", "4.00", False)


def test_a_ticket_at_its_limits_answers_409_and_keeps_taking_events(
    stack: Stack, tickets: ServiceProcess
) -> None:
    customer, agent = unique("chatty"), unique("agent")
    assert tickets.put(
        f"/agents/{agent}", {"name": "A", "queues": ["general"], "capacity": 10}
    ).status_code in (200, 201)
    created = tickets.post("/tickets", {"customer_id": customer, "description": "第一次"})
    assert created.status_code == 201, created.text
    ticket_id = created.json()["id"]
    for n in range(3):  # max_comments=3 in this module's tickets service
        response = tickets.post(f"/tickets/{ticket_id}/comment", {"text": f"c{n}"})
        assert response.status_code == 200, response.text
    refused = tickets.post(f"/tickets/{ticket_id}/comment", {"text": "one too many"})
    assert refused.status_code == 409, refused.text
    assert "3 comments" in refused.json()["message"]
    assert "new ticket" in refused.json()["message"]
    summary = tickets.post(
        f"/tickets/{ticket_id}/resolve", {"root_causes": ["x"], "summary": "a fourth comment"}
    )
    assert summary.status_code == 409, summary.text
    # People's changes up to the history limit (12 lines in this module), then a 409 too.
    moves = ["in_progress", "waiting_customer"] * 10
    answers = [tickets.post(f"/tickets/{ticket_id}/status", {"status": s}) for s in moves]
    codes = [a.status_code for a in answers]
    assert 200 in codes, codes
    assert codes[-1] == 409, codes
    assert "history" in answers[-1].json()["message"]
    full = tickets.get(f"/tickets/{ticket_id}").json()
    assert len(full["history"]) == 12
    # Events for the ticket are still applied: a survey, with its history line omitted.
    survey = cloud_event(
        "survey.answered",
        customer,
        {"survey_id": unique("s"), "ticket_id": ticket_id, "csat": 1, "nps": 2},
    )
    send(stack, "callcenter.v1", (customer, survey))
    surveyed = eventually(
        lambda: (t := tickets.get(f"/tickets/{ticket_id}").json())["survey"] and t, timeout=30
    )
    assert surveyed["survey"]["csat"] == 1
    assert surveyed["flagged_for_review"]
    assert len(surveyed["history"]) == 12
    assert surveyed["history_omitted"] >= 1
