"""Notify as a process on the real stack: the orders' `points.earned` of one local day become one
digest e-mail the next day, with the day's points, orders and latest balance — however the
points arrive (several batches, one event delivered twice), and none for the day not yet over.

What this protects (issue #16): a batch now adds to the day's digest with one upsert (`$inc`)
without reading it or the customer's sealed preferences; the e-mail must stay the one the
read-then-replace gave.
"""

from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from stackutil import ServiceProcess, SmtpServer, Stack, cloud_event, eventually, send, unique

pytestmark = pytest.mark.e2e
SH = ZoneInfo("Asia/Shanghai")


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
