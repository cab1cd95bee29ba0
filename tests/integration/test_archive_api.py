"""The archive as an agent uses it: records, churn warnings, timeline, search, segments, changes."""

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from stackutil import (
    AUTH,
    ServiceProcess,
    Stack,
    cloud_event,
    collect,
    eventually,
    order_placed,
    send,
    unique,
)

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def archive(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("archive", stack).start()
    yield service
    service.stop()


def record(archive: ServiceProcess, customer: str, check: Any = bool) -> dict[str, Any]:
    def fetch() -> dict[str, Any] | None:
        response = archive.get(f"/customers/{customer}")
        if response.status_code != 200:
            return None
        body = dict(response.json())
        return body if check(body) else None

    return dict(eventually(fetch, timeout=15))


def published(stack: Stack, customer: str, until: str) -> list[str]:
    """The types of the customer's events on archive.v1, read until one of type `until` is."""
    records = asyncio.run(
        collect(
            stack.bootstrap,
            "archive.v1",
            lambda r: r.key == customer.encode(),
            until=lambda kept: any(json.loads(r.value)["type"] == until for r in kept),
            timeout=15,
        )
    )
    return [json.loads(r.value)["type"] for r in records]


def complaint(customer: str, complaint_id: str, at: datetime) -> bytes:
    data = {"complaint_id": complaint_id, "channel": "phone", "description": "没有收到货"}
    return cloud_event("complaint.reported", customer, data, time=at)


def test_churn_warnings_are_raised_and_a_later_order_clears_them(
    stack: Stack, archive: ServiceProcess
) -> None:
    slowing, complaining = unique("slow"), unique("angry")
    # Orders every 10 days, the last one 40 days ago: 4x the customer's own median interval.
    send(
        stack,
        "orders.v1",
        *[
            (
                slowing,
                order_placed(
                    slowing, f"{slowing}-o{i}", "99.00", time=NOW - timedelta(days=70 - 10 * i)
                ),
            )
            for i in range(4)
        ],
    )
    send(
        stack,
        "orders.v1",
        (complaining, order_placed(complaining, "o1", "10", time=NOW - timedelta(days=20))),
    )
    send(
        stack,
        "callcenter.v1",
        (complaining, complaint(complaining, "k1", NOW - timedelta(days=9))),
        (complaining, complaint(complaining, "k2", NOW - timedelta(days=1))),
    )

    assert record(archive, slowing, lambda r: r["churn_risk"]["at_risk"])["churn_risk"][
        "reasons"
    ] == ["purchase_interval"]
    assert record(archive, complaining, lambda r: r["churn_risk"]["at_risk"])["churn_risk"][
        "reasons"
    ] == ["complaints"]
    for customer in (slowing, complaining):
        send(
            stack, "orders.v1", (customer, order_placed(customer, f"{customer}-new", "5", time=NOW))
        )
        record(archive, customer, lambda r: not r["churn_risk"]["at_risk"])
        types = published(stack, customer, until="customer.churn_risk_cleared")
        assert types.count("customer.churn_risk_raised") == 1
        assert types[-1] == "customer.churn_risk_cleared"


def test_timeline_pages_by_cursor_in_time_order(stack: Stack, archive: ServiceProcess) -> None:
    customer = unique("t")
    send(
        stack,
        "orders.v1",
        *[
            (customer, order_placed(customer, f"o{i}", "1", time=NOW - timedelta(hours=i)))
            for i in range(7)
        ],
    )
    record(archive, customer, lambda r: r["value"]["order_count"] == 7)
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = archive.get(f"/customers/{customer}/timeline", **params).json()
        seen.extend(item["at"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7
    assert seen == sorted(seen, reverse=True), "newest first"
    bad = archive.get(f"/customers/{customer}/timeline", cursor="not-a-cursor")
    assert bad.status_code == 400


def test_search_by_phone_and_email_flags_possible_duplicates(
    stack: Stack, archive: ServiceProcess
) -> None:
    first, second = unique("dup1"), unique("dup2")
    phone = f"+86 137{abs(hash(first)) % 10**8:08d}"
    send(
        stack,
        "members.v1",
        (
            first,
            cloud_event(
                "customer.registered",
                first,
                {"name": "王芳", "phone": phone},
                time=NOW - timedelta(days=2),
            ),
        ),
        (
            second,
            cloud_event(
                "customer.registered",
                second,
                {"name": "王芳", "phone": phone.replace(" ", ""), "email": f"{second}@example.com"},
                time=NOW - timedelta(days=1),
            ),
        ),
    )
    # The two registrations may land on different partitions, applied by different consumers:
    # the flag is worked out when the record is read, so it shows once both are stored.
    assert record(archive, first)["possible_duplicate_of"] is None
    assert record(archive, second)["possible_duplicate_of"] == first
    found = archive.get("/customers", q=phone[-11:]).json()["items"]
    assert sorted(item["id"] for item in found) == sorted([first, second])
    by_mail = archive.get("/customers", q=f"{second.upper()}@EXAMPLE.COM").json()["items"]
    assert [item["id"] for item in by_mail] == [second]


def test_a_supervisor_sets_the_owner_and_agents_may_not(
    stack: Stack, archive: ServiceProcess
) -> None:
    customer = unique("own")
    send(stack, "orders.v1", (customer, order_placed(customer, "o1", "1", time=NOW)))
    record(archive, customer)
    version = archive.get(f"/customers/{customer}").headers["ETag"]
    changed = httpx.patch(
        archive.url + f"/customers/{customer}",
        headers={**AUTH, "If-Match": version},
        json={"account_owner": "agent-7", "tags": ["vip-care"]},
        timeout=10,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["account_owner"] == "agent-7"
    assert archive.get("/customers", owner="agent-7").json()["items"][0]["id"] == customer
    assert (
        httpx.patch(
            archive.url + f"/customers/{customer}", headers=AUTH, json={"owner": "x"}, timeout=10
        ).status_code
        == 422
    )
    assert "customer.updated" in published(stack, customer, until="customer.updated")


def test_segments_and_export(stack: Stack, archive: ServiceProcess) -> None:
    customer = unique("exp")
    send(
        stack,
        "members.v1",
        (customer, cloud_event("customer.registered", customer, {"name": "赵敏"}, time=NOW)),
    )
    send(stack, "orders.v1", (customer, order_placed(customer, "o1", "12.34", time=NOW)))
    # The registration and the order come on two topics, applied in no order between them.
    record(
        archive,
        customer,
        lambda r: r["value"]["order_count"] == 1 and r["profile"].get("name") == "赵敏",
    )
    summary = archive.get("/segments/summary").json()
    assert summary["stage"].get("new", 0) >= 1
    assert set(summary) == {"grade", "stage", "at_risk"}
    export = archive.get(f"/customers/{customer}/export").json()
    assert export["customer"]["profile"]["name"] == "赵敏"
    assert [o["amount"] for o in export["orders"]] == ["12.34"]
    assert {t["type"] for t in export["timeline"]} == {"customer.registered", "order.placed"}
