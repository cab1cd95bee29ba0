"""A crash between the write and the publish loses no outbound event.

The archive runs with its outbox relay switched off, so the write (customer + outbox entry)
commits but nothing is published; then it is SIGKILLed. The restarted archive's relay publishes
the event: exactly once.
"""

import asyncio
import json
from typing import Any

from pymongo import MongoClient
from pymongo.collection import Collection
from stackutil import ServiceProcess, Stack, collect, eventually, order_placed, produce, unique

from crm_runtime.outbox import row_events

EXPECTED = ["customer.created", "customer.grade_changed", "customer.lifecycle_changed"]


def pending_for(stack: Stack, service: ServiceProcess, customer: str) -> int:
    client: MongoClient[dict[str, Any]]
    with MongoClient(stack.mongodb_url) as client:
        outbox: Collection[dict[str, Any]] = client[service.env["CRM_ARCHIVE_DATABASE"]]["outbox"]
        rows = outbox.find({"sent": False})
        return sum(event["key"] == customer for row in rows for event in row_events(row))


def test_an_event_written_but_not_published_is_published_after_a_crash(stack: Stack) -> None:
    archive = ServiceProcess.isolated("archive", stack).start(outbox_relay_enabled="false")
    customer = unique("c")
    try:
        asyncio.run(
            produce(stack.bootstrap, "orders.v1", [(customer, order_placed(customer, "o", "5"))])
        )
        eventually(lambda: archive.get(f"/customers/{customer}").status_code == 200)
        assert pending_for(stack, archive, customer) == len(EXPECTED), (
            "the write and its outbox entry committed"
        )

        def announced(timeout: float) -> list[Any]:
            return asyncio.run(
                collect(
                    stack.bootstrap,
                    "archive.v1",
                    lambda r: r.key == customer.encode(),
                    until=lambda kept: len(kept) > len(EXPECTED),
                    timeout=timeout,
                )
            )

        assert announced(2) == [], "the relay is off: nothing may be published yet"
        archive.kill()

        archive.start(outbox_relay_enabled="true")
        events = announced(10)
        assert [json.loads(r.value)["type"] for r in events] == EXPECTED
        eventually(lambda: pending_for(stack, archive, customer) == 0)
    finally:
        archive.stop()
