"""Replay realistic generated traffic into the local stack, then print a summary.

    python deploy/local/demo.py [--customers 300] [--seed 7]

Registrations, orders (some refunded or cancelled), call-center contacts, complaints and survey
answers for a few hundred customers over the last two years, sent in time order as CloudEvents.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = [
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "洋",
    "艳",
    "勇",
    "军",
    "杰",
    "娟",
    "涛",
    "明",
]
CITIES = ["上海", "北京", "广州", "深圳", "杭州", "成都", "南京", "武汉", "Singapore", "London"]
COMPLAINTS = {
    "delivery": "快递延误，超过承诺时间三天仍未送达。",
    "product": "收到的商品有破损，包装也被压坏了。",
    "billing": "同一笔订单被重复扣款。",
    "service": "客服多次未回电，问题没有得到解决。",
    "other": "会员积分显示不正确。",
}


@dataclass(frozen=True)
class Sent:
    topic: str
    key: str
    value: bytes
    event_type: str


def event(event_type: str, subject: str, at: datetime, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "demo/" + event_type.split(".")[0],
            "type": event_type,
            "subject": subject,
            "time": at.isoformat(),
            "datacontenttype": "application/json",
            "data": data,
        },
        ensure_ascii=False,
    ).encode()


def generate(customers: int, seed: int) -> list[tuple[datetime, Sent]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    traffic: list[tuple[datetime, Sent]] = []

    def add(topic: str, customer: str, at: datetime, event_type: str, data: dict[str, Any]) -> None:
        traffic.append(
            (at, Sent(topic, customer, event(event_type, customer, at, data), event_type))
        )

    for n in range(customers):
        customer = f"demo-c{n:05d}"
        joined = now - timedelta(days=rng.randrange(1, 730), minutes=rng.randrange(1440))
        registered = rng.random() < 0.9
        if registered:
            name = rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice([1, 2])))
            add(
                "members.v1",
                customer,
                joined,
                "customer.registered",
                {
                    "name": name,
                    "phone": f"+86 1{rng.randrange(30, 99)}{rng.randrange(10**8):08d}",
                    "email": f"user{n}@example.com",
                    "city": rng.choice(CITIES),
                    "gender": rng.choice(["female", "male", "undisclosed"]),
                    "consents": {"email": {"transactional": True, "marketing": rng.random() < 0.4}},
                    "source": rng.choice(["app", "web", "store"]),
                    # Half have an account owner (责任人): their follow-ups are owner-01's.
                    **({"account_owner": "owner-01"} if n % 2 == 0 else {}),
                },
            )
        habit = rng.choice([0, 1, 2, 6, 15])  # orders a year, roughly
        at = joined
        for o in range(max(0, int(rng.gauss(habit * 1.5, 2))) if habit else 0):
            at += timedelta(days=rng.expovariate(max(habit, 1) / 365))
            if at >= now:
                break
            order_id = f"{customer}-o{o}"
            amount = Decimal(rng.randrange(1990, 199900)) / 100
            add(
                "orders.v1",
                customer,
                at,
                "order.placed",
                {
                    "order_id": order_id,
                    "amount": str(amount),
                    "currency": "CNY",
                    "channel": rng.choice(["web", "app", "store", "phone"]),
                    "items": [
                        {
                            "sku": f"SKU-{rng.randrange(100, 999)}",
                            "qty": 1,
                            "unit_price": str(amount),
                        }
                    ],
                },
            )
            roll = rng.random()
            if roll < 0.04:
                add(
                    "orders.v1",
                    customer,
                    at + timedelta(hours=2),
                    "order.cancelled",
                    {"order_id": order_id, "reason": "customer changed their mind"},
                )
            elif roll < 0.12:
                part = (amount * Decimal(rng.choice([25, 50, 100])) / 100).quantize(Decimal("0.01"))
                add(
                    "orders.v1",
                    customer,
                    at + timedelta(days=rng.randrange(1, 20)),
                    "order.refunded",
                    {"order_id": order_id, "amount": str(part), "reason": "damaged"},
                )
            if rng.random() < 0.08:
                category = rng.choice(list(COMPLAINTS))
                complaint_at = at + timedelta(days=rng.randrange(1, 10))
                add(
                    "callcenter.v1",
                    customer,
                    complaint_at,
                    "complaint.reported",
                    {
                        "complaint_id": f"{order_id}-cmp",
                        "channel": "phone",
                        "description": COMPLAINTS[category],
                        "category": category,
                        "severity": rng.choice(["low", "medium", "high", "critical"]),
                        "order_id": order_id,
                        "agent_id": f"agent-{rng.randrange(1, 9)}",
                    },
                )
                add(
                    "callcenter.v1",
                    customer,
                    complaint_at + timedelta(days=3),
                    "survey.answered",
                    {
                        "survey_id": f"{order_id}-srv",
                        "csat": rng.randrange(1, 6),
                        "nps": rng.randrange(0, 11),
                    },
                )
        for c in range(rng.choice([0, 0, 1, 2])):
            contact_at = joined + timedelta(days=rng.randrange(1, 700))
            if contact_at < now:
                add(
                    "callcenter.v1",
                    customer,
                    contact_at,
                    "contact.logged",
                    {
                        "contact_id": f"{customer}-ct{c}",
                        "agent_id": f"agent-{rng.randrange(1, 9)}",
                        "channel": rng.choice(["phone", "chat", "wechat", "email"]),
                        "direction": rng.choice(["in", "out"]),
                        "topic": "咨询",
                        "duration_s": rng.randrange(30, 1200),
                        "sentiment": round(rng.uniform(-1, 1), 2),
                    },
                )
    # What follows an order or a complaint (a refund, a survey) may fall after today: not sent,
    # as a real shop could not have sent it yet (services refuse events dated in the future).
    traffic = [item for item in traffic if item[0] <= now]
    traffic.sort(key=lambda item: item[0])
    return traffic


async def send(bootstrap: str, traffic: list[tuple[datetime, Sent]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=10
    )
    await producer.start()
    try:
        pending = []
        for _, sent in tqdm(traffic, desc="sending events", unit="ev"):
            pending.append(await producer.send(sent.topic, sent.value, key=sent.key.encode()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def get(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {stack.DEV_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body[:1] in b"[{" else body.decode()


def put(url: str, body: Any) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={
            "Authorization": f"Bearer {stack.DEV_TOKEN}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def post(url: str, body: Any, key: str) -> Any:
    """A POST with an Idempotency-Key: running the demo again creates nothing twice."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {stack.DEV_TOKEN}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


AGREEMENTS = 5
"""The demo's biggest buyers sign an agreement (协议客户) with the account owner owner-01."""


def create_agreements(port: int, traffic: list[tuple[datetime, Sent]]) -> list[str]:
    """This year's agreements, signed before the traffic is sent, so its orders fill them:
    a quarterly minimum spend and a 2-hour first response for complaints."""
    buyers = Counter(sent.key for _, sent in traffic if sent.event_type == "order.placed")
    year = datetime.now(UTC).year
    numbers = []
    for n, (customer, _) in enumerate(buyers.most_common(AGREEMENTS), start=1):
        number = f"AGR-{year}-{n:03d}"
        body = {
            "customer_id": customer,
            "number": number,
            "owner": "owner-01",
            "starts_on": f"{year}-01-01",
            "ends_on": f"{year}-12-31",
            "terms": {
                "period": "quarter",
                "minimum": "3000",
                "currency": "CNY",
                "first_response_hours": 2,
                "renewal_notice_days": 30,
            },
        }
        post(f"http://127.0.0.1:{port}/agreements", body, key=f"demo-{number}")
        numbers.append(number)
    return numbers


def show_relations(port: int) -> None:
    """The agreements' fulfilment this quarter and the follow-up tasks the events made."""
    base = f"http://127.0.0.1:{port}"
    agreements = get(f"{base}/agreements?owner=owner-01&limit=50")["items"]
    print(f"\nAgreement customers (协议客户), GET {base}/agreements?owner=owner-01:")
    for agreement in agreements:
        current = agreement["current_period"] or {}
        print(
            f"  {agreement['number']}  {agreement['customer_id']:<10} {agreement['status']:<10}"
            f" this quarter {current.get('fulfilled', '-')} of {current.get('minimum', '-')} CNY,"
            f" projected {current.get('projected', '-')}"
        )
    tasks = get(f"{base}/tasks?owner=*&status=open&limit=500")["items"]
    kinds = Counter(task["kind"] for task in tasks)
    owners = Counter(task["owner"] or "(queue)" for task in tasks)
    print(f"Open follow-up tasks (定期回访), GET {base}/tasks?owner=*&status=open: {len(tasks)}")
    print("  by kind:  " + ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())))
    print("  by owner: " + ", ".join(f"{k}: {v}" for k, v in sorted(owners.items())))


def sweep_now(port: int, name: str) -> int:
    """Run a service's sweep now (`POST /ops/sweeps/{name}`, the dev token has `ops`)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/ops/sweeps/{name}",
        method="POST",
        headers={"Authorization": f"Bearer {stack.DEV_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(json.loads(response.read())["changed"])


def show_staff_messages(relations_port: int, notify_port: int, customers: list[str]) -> None:
    """The owners' morning digests (relations decides, notify e-mails the demo users from
    stack.DEMO_STAFF): owner-01 gets two callbacks due today, and the sweeps run now instead of
    waiting for their interval."""
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    for n, customer in enumerate(customers[:2]):
        body = {"customer_id": customer, "kind": "callback", "owner": "owner-01"}
        post(
            f"http://127.0.0.1:{relations_port}/tasks",
            body | {"due_on": today.isoformat()},
            key=f"demo-callback-{today}-{n}",
        )
    overdue = sweep_now(relations_port, "overdue")
    digests = sweep_now(relations_port, "digest")
    base = f"http://127.0.0.1:{notify_port}/notifications"

    def made() -> list[dict[str, Any]]:
        return [
            item
            for template in ("task_digest", "task_escalated", "agreement_at_risk")
            for item in get(f"{base}?template={template}&limit=500")["items"]
        ]

    deadline = time.monotonic() + 20
    while digests and not any(i["template"] == "task_digest" for i in made()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    kinds = Counter(f"{item['template']} {item['status']}" for item in made())
    when = (
        f"{digests} digest(s) given"
        if digests
        else "no digest now (none is given before 08:30 of a business day in Asia/Shanghai, "
        "or it was given already today)"
    )
    print(
        f"\nStaff messages (relations' sweeps now: {overdue} overdue notice(s), {when}); "
        "notify's e-mails to the demo users (CRM_NOTIFY_STAFF): "
        + (", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())) or "none yet")
    )


def notification_statuses(port: int, pages: int = 40) -> Counter[str]:
    counts: Counter[str] = Counter()
    cursor = ""
    for _ in range(pages):
        page = get(f"http://127.0.0.1:{port}/notifications?limit=500&cursor={cursor}")
        counts.update(
            f"{item['status']} ({item['reason']})" if item["reason"] == "stale" else item["status"]
            for item in page["items"]
        )
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    return counts


def handled(port: int) -> float:
    """Events a service has applied, skipped as not its business, or dead-lettered."""
    return stack.metric(
        port, "crm_events_processed_total", "crm_events_ignored_total", "crm_dlq_messages_total"
    )


def await_handled(name: str, port: int, target: float) -> None:
    with tqdm(total=int(target), desc=f"{name} applying events", unit="ev") as bar:
        bar.update(int(handled(port)))
        deadline = time.monotonic() + 300
        while bar.n < target and time.monotonic() < deadline:
            time.sleep(0.25)
            bar.update(int(handled(port)) - bar.n)
    # Services also read other services' events (tickets reads archive.v1): wait until quiet.
    await_quiet(port, deadline)


def await_quiet(port: int, deadline: float) -> None:
    """Until the process on `port` has handled nothing new for 2 s (or `deadline`)."""
    settled, last = 0, handled(port)
    while settled < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
        now = handled(port)
        settled, last = (settled + 1, now) if now == last else (0, now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    local = stack.LocalStack()
    traffic = generate(args.customers, args.seed)
    by_type = Counter(sent.event_type for _, sent in traffic)
    archive_port, loyalty_port = local.services["archive"], local.services["loyalty"]
    tickets_port, notify_port = local.services["tickets"], local.services["notify"]
    for n, queue in enumerate(["product", "delivery", "service", "billing", "general"] * 2):
        put(
            f"http://127.0.0.1:{tickets_port}/agents/agent-{n + 1}",
            {"name": f"Agent {n + 1}", "queues": [queue], "capacity": 20},
        )
    put(  # the demo user agent-07 (stack.DEMO_USERS) is an agent too: her tickets, assignee=me
        f"http://127.0.0.1:{tickets_port}/agents/agent-07",
        {"name": "Agent 07", "queues": ["delivery", "service"], "capacity": 20},
    )
    relations_port = local.services["relations"]
    create_agreements(relations_port, traffic)
    ports = (archive_port, loyalty_port, tickets_port, notify_port, relations_port)
    before = {port: handled(port) for port in ports}
    archive_before = stack.metric(archive_port, "crm_events_processed_total")
    dlq_before = stack.metric(archive_port, "crm_dlq_messages_total")
    started = time.monotonic()
    asyncio.run(send(local.bootstrap(), traffic))
    # The archive consumes every topic the demo sends to; loyalty members and orders.
    await_handled("archive", archive_port, before[archive_port] + len(traffic))
    loyalty_expected = sum(1 for _, sent in traffic if sent.topic in ("members.v1", "orders.v1"))
    await_handled("loyalty", loyalty_port, before[loyalty_port] + loyalty_expected)
    tickets_expected = sum(1 for _, sent in traffic if sent.topic == "callcenter.v1")
    await_handled("tickets", tickets_port, before[tickets_port] + tickets_expected)
    members = sum(1 for _, sent in traffic if sent.topic == "members.v1")
    await_handled("notify", notify_port, before[notify_port] + members)
    orders = sum(1 for _, sent in traffic if sent.topic == "orders.v1")
    await_handled("relations", relations_port, before[relations_port] + members + orders)
    for replica in local.replicas.values():  # notify's bulk: points, tiers, churn, staff alerts
        await_quiet(replica.port, time.monotonic() + 300)
    elapsed = time.monotonic() - started
    print("\nSent (CloudEvents, keyed by customer id):")
    for event_type, count in sorted(by_type.items()):
        print(f"  {event_type:<28} {count:>6}")
    print(f"  {'total':<28} {len(traffic):>6}   in {elapsed:.1f} s")
    print(f"\nArchive (http://127.0.0.1:{archive_port}):")
    applied = stack.metric(archive_port, "crm_events_processed_total") - archive_before
    dead = stack.metric(archive_port, "crm_dlq_messages_total") - dlq_before
    print(f"  events applied         {applied:>8.0f}")
    print(f"  dead letters           {dead:>8.0f}")
    biggest = max(
        (sent.key for _, sent in traffic if sent.event_type == "order.placed"),
        key=lambda key: sum(
            1 for _, s in traffic if s.key == key and s.event_type == "order.placed"
        ),
        default=None,
    )
    segments = get(f"http://127.0.0.1:{archive_port}/segments/summary")
    print("\nSegments (GET /segments/summary):")
    for dimension, counts in segments.items():
        print(f"  {dimension:<8} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    if biggest:
        record = get(f"http://127.0.0.1:{archive_port}/customers/{biggest}")
        value = record["value"]
        print(f"\nMost frequent buyer, GET /customers/{biggest}:")
        print(
            f"  grade {record['grade']}, stage {record['stage']}, "
            f"churn risk {record['churn_risk']['reasons'] or 'none'}"
        )
        print(
            f"  {value['order_count']} orders, net {value['net_spent']} {value['currency']}, "
            f"AOV {value['average_order_value']}, RFM {value['rfm']['r']}{value['rfm']['f']}"
            f"{value['rfm']['m']}, NPS {value['nps']}, CSAT {value['csat']}"
        )
        points = get(f"http://127.0.0.1:{loyalty_port}/accounts/{biggest}")
        print(f"\nTheir points, GET :{loyalty_port}/accounts/{biggest}:")
        progress = (
            f"{points['points_to_next_tier']} more to {points['next_tier']}"
            if points["next_tier"]
            else "the top tier"
        )
        print(
            f"  balance {points['balance']}, tier {points['tier']} "
            f"({points['qualifying_points']} qualifying points; {progress})"
        )
    # A report covers at most 366 days (REPORT_MAX_DAYS): the last year's complaints.
    since = (datetime.now(UTC) - timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sla = get(f"http://127.0.0.1:{tickets_port}/reports/sla?since={since}")
    print(
        f"\nTickets (GET /reports/sla, the last 365 days): {sla['all']['tickets']} opened from "
        "complaints, "
        f"{sla['all']['breached']} past their SLA (historical complaints nobody answered); "
        "by priority: " + ", ".join(f"{p} {v['tickets']}" for p, v in sla["by_priority"].items())
    )
    time.sleep(3)  # let the delivery worker catch up
    statuses = notification_statuses(notify_port)
    print(
        "\nNotifications (GET /notifications): "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        + f"; the mail catcher's maildir is {local.root / 'mail'}"
        + (
            "\n  (stale: the history's welcomes, acknowledgements and promotions more than "
            "3 days old are recorded, not mailed; CRM_NOTIFY_RULES__MAX_AGE_S)"
            if any("stale" in status for status in statuses)
            else ""
        )
    )
    liability = get(f"http://127.0.0.1:{loyalty_port}/reports/liability")
    print(
        f"\nPoints liability (GET /reports/liability): {liability['outstanding_points']} points "
        f"outstanding over {liability['accounts']} accounts, {liability['debt_points']} in debt"
    )
    show_relations(relations_port)
    registered = [s.key for _, s in traffic if s.event_type == "customer.registered"]
    show_staff_messages(relations_port, notify_port, registered)
    show_privacy(local, traffic, biggest, archive_port)
    show_prometheus(local)
    print(
        f"\nTry: curl -H 'Authorization: Bearer {stack.DEV_TOKEN}' http://127.0.0.1:{archive_port}/customers/{biggest}"
    )


PROMQL = {
    "service processes up": 'sum(up{job="crm"})',  # notify runs two (ADR 0028)
    "customers (archive)": "sum(max by (grade, stage) (crm_customers))",
    "churn risks raised": "sum(crm_churn_risks_raised_total)",
    "open tickets": "sum(max by (priority) (crm_tickets_open))",
    "SLA breaches": "sum(crm_sla_breaches_total)",
    "points earned": "sum(crm_points_earned_total)",
    "points outstanding": "max(crm_points_outstanding)",
    "e-mails sent": 'sum(crm_notifications_total{channel="email", status="sent"})',
    "consumer lag (messages)": "sum(crm:consumer_lag:sum)",
    "dead letters": "sum(crm_dlq_messages_total)",
}


def show_prometheus(local: stack.LocalStack) -> None:
    """What ops see: the same figures from Prometheus, which scrapes the services every 5 s."""
    if not local.running("prometheus"):
        return
    url = f"http://127.0.0.1:{stack.PROMETHEUS_PORT}"
    time.sleep(11)  # two scrapes and a rule evaluation after the traffic
    figures = []
    for label, expr in PROMQL.items():
        result = get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        samples = result["data"]["result"]
        figures.append(f"{label} {float(samples[0]['value'][1]):.0f}" if samples else f"{label} -")
    alerts = get(f"{url}/api/v1/alerts")["data"]["alerts"]
    firing = sorted({a["labels"]["alertname"] for a in alerts if a["state"] == "firing"})
    print(f"\nPrometheus ({url}; counters since the services started): " + "; ".join(figures))
    print(f"Alerts firing: {', '.join(firing) or 'none'} (rules: deploy/prometheus/rules.yml)")


def show_privacy(
    local: stack.LocalStack,
    traffic: list[tuple[datetime, Sent]],
    reader: str | None,
    archive_port: int,
) -> None:
    """One registered customer asks to be forgotten: every service confirms; reads are audited."""
    registered = [s.key for _, s in traffic if s.event_type == "customer.registered"]
    leaving = next((key for key in reversed(registered) if key != reader), None)
    if leaving is None:
        return
    now = datetime.now(UTC)
    reason = {"reason": "demo: 个人信息删除请求"}
    request = event("customer.erasure_requested", leaving, now, reason)
    started = time.monotonic()
    asyncio.run(
        send(
            local.bootstrap(),
            [(now, Sent("members.v1", leaving, request, "customer.erasure_requested"))],
        )
    )
    base = f"http://127.0.0.1:{archive_port}"
    status: dict[str, Any] = {}
    while time.monotonic() - started < 30:
        try:
            status = get(f"{base}/customers/{leaving}/erasure")
        except urllib.error.HTTPError:
            status = {}
        if status.get("complete"):
            break
        time.sleep(0.2)
    confirmed = sorted(k for k, v in status.get("services", {}).items() if v["confirmed_at"])
    print(
        f"\nErasure of {leaving} (GET /customers/{leaving}/erasure): confirmed by "
        f"{', '.join(confirmed) or 'nobody yet'} in {time.monotonic() - started:.2f} s; "
        f"profile now {get(f'{base}/customers/{leaving}')['profile']}"
    )
    if reader:
        reads = get(f"{base}/audit/pii-reads?customer_id={reader}")["items"]
        print(
            f"Audit (GET /audit/pii-reads?customer_id={reader}): "
            + "; ".join(f"{r['at'][:19]} {r['actor']} {r['route']}" for r in reads[:3])
        )


if __name__ == "__main__":
    main()
