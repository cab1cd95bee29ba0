"""Notify as a process on the real stack: the orders' `points.earned` of one local day become one
digest e-mail the next day, with the day's points, orders and latest balance — however the
points arrive (several batches, one event delivered twice), and none for the day not yet over.

What this protects (issue #16): a batch now adds to the day's digest with one upsert (`$inc`)
without reading it or the customer's sealed preferences; the e-mail must stay the one the
read-then-replace gave. And every point is in one e-mail, sent after the customer's own local
midnight (not the UTC one), late points in one more.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from stackutil import ServiceProcess, SmtpServer, Stack, cloud_event, eventually, send, unique

pytestmark = pytest.mark.e2e
SH = ZoneInfo("Asia/Shanghai")
LA = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def notify(stack: Stack, smtp: SmtpServer) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated(
        "notify",
        stack,
        smtp_host="127.0.0.1",
        smtp_port=str(smtp.port),
        deliver_interval_s="0.5",
        clock_override_enabled="true",
    ).start()
    yield service
    service.stop()


def earned(customer: str, points: int, balance: int, at: datetime) -> bytes:
    data = {"points": points, "reason": "order", "order_id": unique("o"), "balance": balance}
    return cloud_event("points.earned", customer, data, time=at)


def notifications(notify: ServiceProcess, customer: str, template: str) -> list[dict[str, Any]]:
    items = notify.get("/notifications", customer_id=customer, template=template).json()["items"]
    return [notify.get(f"/notifications/{i['id']}").json() for i in items]


def test_a_days_points_in_several_batches_make_one_digest_email_the_next_day(
    stack: Stack, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    # A day ahead of the real clock: the hourly sweep (real time) leaves its digest alone.
    day = (datetime.now(SH) + timedelta(days=10)).date()
    customer = unique("points")
    address = f"{customer}@example.com"
    send(
        stack,
        "members.v1",
        (
            customer,
            cloud_event("customer.registered", customer, {"name": "李雷", "email": address}),
        ),
    )
    eventually(lambda: notify.get(f"/preferences/{customer}").status_code == 200, timeout=30)
    at = datetime.combine(day, time(9, 0), tzinfo=SH)
    first = earned(customer, 10, 10, at)
    send(stack, "loyalty.v1", (customer, first))
    send(stack, "loyalty.v1", (customer, earned(customer, 25, 35, at + timedelta(hours=3))))
    send(
        stack,
        "loyalty.v1",
        (customer, first),  # delivered twice: counted once
        (customer, earned(customer, 5, 40, at + timedelta(hours=14, minutes=59))),  # 23:59
        (customer, earned(customer, 7, 47, at + timedelta(hours=15, minutes=1))),  # the next day
    )
    # The same key, the same partition: once this marker's message exists, every event sent
    # before it has been applied.
    marker = {"points": 1, "expires_at": (at + timedelta(days=30)).isoformat()}
    send(stack, "loyalty.v1", (customer, cloud_event("points.expiring_soon", customer, marker)))
    eventually(lambda: notifications(notify, customer, "points_expiring"), timeout=30)

    noon = datetime.combine(day, time(12, 0), tzinfo=SH)
    assert notify.post("/ops/sweeps/digest", at=noon.isoformat()).status_code == 200
    assert notifications(notify, customer, "points_digest") == []  # the day is not over

    next_noon = noon + timedelta(days=1)
    for _ in range(2):  # a second sweep makes nothing more
        assert notify.post("/ops/sweeps/digest", at=next_noon.isoformat()).status_code == 200
    assert notify.post("/ops/sweeps/deliver", at=next_noon.isoformat()).status_code == 200
    [digest] = notifications(notify, customer, "points_digest")
    assert digest["status"] == "sent"
    [mail] = [m for m in smtp.mailbox.to(address) if m["Subject"].startswith("今日积分")]
    assert mail["Subject"] == "今日积分：+40"
    assert f"您在 {day.isoformat()} 通过 3 笔订单获得 40 积分，当前余额 40" in mail.get_content()


def test_a_los_angeles_customers_digest_waits_for_their_midnight_and_late_points_come_after(
    stack: Stack, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    """A customer in Los Angeles: at 00:30 UTC their day still runs, nothing is sent; their
    points of 10:00 and 23:00 are in the one e-mail after their midnight. Points of that day
    arriving the next morning (a delayed event, delivered twice) are one more e-mail, once."""
    day = (datetime.now(LA) + timedelta(days=10)).date()  # the real-time sweep leaves it alone
    customer = unique("points-la")
    address = f"{customer}@example.com"
    registration = cloud_event("customer.registered", customer, {"name": "Lei", "email": address})
    send(stack, "members.v1", (customer, registration))
    eventually(lambda: notify.get(f"/preferences/{customer}").status_code == 200, timeout=30)
    etag = notify.get(f"/preferences/{customer}").headers["ETag"]
    zone = {"time_zone": "America/Los_Angeles"}
    changed = notify.put(f"/preferences/{customer}", zone, headers={"If-Match": etag})
    assert changed.status_code == 200, changed.text
    at = datetime.combine(day, time(10, 0), tzinfo=LA)
    send(
        stack,
        "loyalty.v1",
        (customer, earned(customer, 10, 10, at)),
        (customer, earned(customer, 25, 35, at + timedelta(hours=13))),  # 23:00 there
    )
    applied(stack, notify, customer, 1)

    utc_half_past_midnight = datetime.combine(day + timedelta(days=1), time(0, 30), tzinfo=UTC)
    assert notify.post("/ops/sweeps/digest", at=utc_half_past_midnight.isoformat()).is_success
    assert notifications(notify, customer, "points_digest") == []  # 16:30 there

    after_midnight = datetime.combine(day + timedelta(days=1), time(0, 30), tzinfo=LA)
    assert notify.post("/ops/sweeps/digest", at=after_midnight.isoformat()).is_success
    assert notify.post("/ops/sweeps/deliver", at=after_midnight.isoformat()).is_success
    assert digest_mails(smtp, address) == ["今日积分：+35"]

    delayed = earned(customer, 7, 42, at + timedelta(hours=8))  # 18:00 that day, arriving late
    send(stack, "loyalty.v1", (customer, delayed))
    applied(stack, notify, customer, 2)
    next_morning = after_midnight + timedelta(hours=9)
    for markers in (3, 4):  # the delayed event again, the sweep again: nothing more
        send(stack, "loyalty.v1", (customer, delayed))
        applied(stack, notify, customer, markers)
        assert notify.post("/ops/sweeps/digest", at=next_morning.isoformat()).is_success
        assert notify.post("/ops/sweeps/deliver", at=next_morning.isoformat()).is_success
    assert sorted(digest_mails(smtp, address)) == ["今日积分：+35", "今日积分：+7"]
    assert all(d["status"] == "sent" for d in notifications(notify, customer, "points_digest"))


def applied(stack: Stack, notify: ServiceProcess, customer: str, count: int) -> None:
    """Wait until the events sent to `customer` so far are applied: a marker message on the same
    key and partition (its `count`-th `points_expiring` message) is made after them."""
    marker = {"points": 1, "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()}
    send(stack, "loyalty.v1", (customer, cloud_event("points.expiring_soon", customer, marker)))
    eventually(lambda: len(notifications(notify, customer, "points_expiring")) >= count, timeout=30)


def digest_mails(smtp: SmtpServer, address: str) -> list[str]:
    return [m["Subject"] for m in smtp.mailbox.to(address) if m["Subject"].startswith("今日积分")]
