"""Loyalty on the real stack: orders earn, refunds reverse by the documented policy, tiers move,
the expiry sweep (with an injected clock) expires exactly the due lots, redeliveries credit once."""

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from stackutil import (
    ServiceProcess,
    Stack,
    cloud_event,
    collect,
    eventually,
    order_placed,
    send,
    unique,
)

pytestmark = pytest.mark.e2e
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def loyalty(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated(
        "loyalty",
        stack,
        clock_override_enabled="true",
        rules__welcome_bonus="100",
        rules__tier_thresholds=json.dumps(
            {"standard": 0, "silver": 1000, "gold": 5000, "diamond": 20000}
        ),
    ).start()
    yield service
    service.stop()


def account(loyalty: ServiceProcess, customer: str, check: Any = bool) -> dict[str, Any]:
    def fetch() -> dict[str, Any] | None:
        response = loyalty.get(f"/accounts/{customer}")
        if response.status_code != 200:
            return None
        body = dict(response.json())
        return body if check(body) else None

    return dict(eventually(fetch, timeout=20))


def published(stack: Stack, customer: str, until: Any) -> list[dict[str, Any]]:
    records = asyncio.run(
        collect(
            stack.bootstrap,
            "loyalty.v1",
            lambda r: r.key == customer.encode(),
            until=lambda kept: until([json.loads(r.value) for r in kept]),
            timeout=20,
        )
    )
    return [json.loads(r.value) for r in records]


def redeem(loyalty: ServiceProcess, customer: str, points: int, key: str) -> Any:
    return loyalty.post(
        f"/accounts/{customer}/redemptions",
        {"points": points},
        headers={"Idempotency-Key": key},
    )


def test_an_order_placed_three_times_earns_once_and_is_announced(
    stack: Stack, loyalty: ServiceProcess
) -> None:
    customer = unique("p")
    event = order_placed(customer, "o1", "250.80", event_id=f"{customer}-e1")
    send(stack, "orders.v1", (customer, event), (customer, event), (customer, event))
    send(stack, "orders.v1", (customer, order_placed(customer, "o2", "10")))
    assert account(loyalty, customer, lambda a: a["balance"] >= 260)["balance"] == 260
    events = published(stack, customer, lambda kept: len(kept) >= 2)
    earned = [e["data"] for e in events if e["type"] == "points.earned"]
    assert [(e["order_id"], e["points"]) for e in earned] == [("o1", 250), ("o2", 10)]
    ledger = loyalty.get(f"/accounts/{customer}/ledger").json()["items"]
    assert [e["points"] for e in ledger] == [10, 250]


def test_a_refund_after_a_partial_redemption_records_debt_repaid_by_later_orders(
    stack: Stack, loyalty: ServiceProcess
) -> None:
    customer = unique("d")
    send(stack, "orders.v1", (customer, order_placed(customer, "o1", "500")))
    account(loyalty, customer, lambda a: a["balance"] == 500)
    first = redeem(loyalty, customer, 300, f"{customer}-r1")
    assert first.status_code == 201, first.text
    again = redeem(loyalty, customer, 300, f"{customer}-r1")
    assert again.status_code == 200
    assert again.json() == first.json()
    short = redeem(loyalty, customer, 201, f"{customer}-r2")
    assert short.status_code == 409
    assert "balance is 200" in short.json()["message"]

    refund = cloud_event("order.refunded", customer, {"order_id": "o1", "amount": "400"})
    send(stack, "orders.v1", (customer, refund))
    state = account(loyalty, customer, lambda a: a["balance"] < 200)
    assert (state["balance"], state["debt"]) == (-200, 200)  # 400 reversed, 200 were spent
    assert redeem(loyalty, customer, 1, f"{customer}-r3").status_code == 409
    send(stack, "orders.v1", (customer, order_placed(customer, "o2", "250")))
    state = account(loyalty, customer, lambda a: a["balance"] > -200)
    assert (state["balance"], state["debt"]) == (50, 0)
    ledger = loyalty.get(f"/accounts/{customer}/ledger").json()["items"]
    assert sum(e["points"] for e in ledger) == 50
    assert [e["kind"] for e in reversed(ledger)] == ["earn", "redeem", "reverse", "earn"]


def test_reaching_the_silver_threshold_emits_tier_changed(
    stack: Stack, loyalty: ServiceProcess
) -> None:
    customer = unique("t")
    send(stack, "orders.v1", (customer, order_placed(customer, "o1", "1200")))
    assert account(loyalty, customer, lambda a: a["tier"] != "standard")["tier"] == "silver"
    events = published(stack, customer, lambda kept: len(kept) >= 2)
    tier = [e["data"] for e in events if e["type"] == "tier.changed"]
    assert tier == [{"tier": "silver", "previous_tier": "standard", "qualifying_points": 1200}]


def test_the_expiry_sweep_as_of_a_later_date_expires_exactly_the_due_lots(
    stack: Stack, loyalty: ServiceProcess
) -> None:
    customer = unique("x")
    old, recent = NOW - timedelta(days=800), NOW - timedelta(days=10)
    send(
        stack,
        "orders.v1",
        (customer, order_placed(customer, "o-old", "70", time=old)),
        (customer, order_placed(customer, "o-new", "30", time=recent)),
    )
    account(loyalty, customer, lambda a: a["balance"] == 100)
    # Run the sweep as of one day after the old lot's expiry (24 months after it was earned).
    at = (old + timedelta(days=2 * 365 + 2)).replace(microsecond=0)
    response = loyalty.post("/ops/sweeps/expiry", at=at.isoformat())
    assert response.status_code == 200, response.text
    state = account(loyalty, customer)
    assert state["balance"] == 30
    events = published(
        stack, customer, lambda kept: any(e["type"] == "points.expired" for e in kept)
    )
    assert [e["data"]["points"] for e in events if e["type"] == "points.expired"] == [70]
    again = loyalty.post("/ops/sweeps/expiry", at=at.isoformat())
    assert again.status_code == 200
    assert account(loyalty, customer)["balance"] == 30


def test_registration_enrols_with_the_welcome_bonus_and_a_supervisor_grants_goodwill(
    stack: Stack, loyalty: ServiceProcess
) -> None:
    customer = unique("w")
    send(
        stack,
        "members.v1",
        (customer, cloud_event("customer.registered", customer, {"name": "Wang Fang"})),
    )
    assert account(loyalty, customer, lambda a: a["balance"] > 0)["balance"] == 100
    body = {"points": 300, "reason": "service recovery for ticket T-1"}
    first = loyalty.post(
        f"/accounts/{customer}/adjustments", body, headers={"Idempotency-Key": "a1"}
    )
    assert first.status_code == 201, first.text
    again = loyalty.post(
        f"/accounts/{customer}/adjustments", body, headers={"Idempotency-Key": "a1"}
    )
    assert again.status_code == 200
    assert account(loyalty, customer)["balance"] == 400
    no_reason = loyalty.post(
        f"/accounts/{customer}/adjustments", {"points": 5}, headers={"Idempotency-Key": "a2"}
    )
    assert no_reason.status_code == 422
    no_key = loyalty.post(f"/accounts/{customer}/redemptions", {"points": 5})
    assert no_key.status_code == 422
    report = loyalty.get("/reports/liability").json()
    assert report["outstanding_points"] >= 400


def test_unknown_accounts_and_bad_cursors_are_4xx(loyalty: ServiceProcess) -> None:
    assert loyalty.get("/accounts/nobody-here").status_code == 404
    assert redeem(loyalty, "nobody-here", 1, "k").status_code == 404
    customer_cursor = loyalty.get("/accounts/nobody-here/ledger", cursor="%%%")
    assert customer_cursor.status_code in (400, 404)
