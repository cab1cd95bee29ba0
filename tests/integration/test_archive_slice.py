"""The vertical slice: order.placed on Kafka -> the archive's record -> GET /customers/{id}."""

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from stackutil import ServiceProcess, Stack, collect, eventually, order_placed, produce, unique


@pytest.fixture(scope="module")
def archive(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("archive", stack).start()
    yield service
    service.stop()


def send_with_kcat(stack: Stack, topic: str, key: str, value: bytes) -> None:
    subprocess.run(
        ["kcat", "-b", stack.bootstrap, "-t", topic, "-k", key, "-P"],
        input=value,
        check=True,
        timeout=30,
    )


def test_an_order_sent_with_kcat_shows_in_the_customer_record(
    stack: Stack, archive: ServiceProcess
) -> None:
    customer = unique("c")
    event = order_placed(customer, "o-1", "129.90")
    if shutil.which("kcat"):
        send_with_kcat(stack, "orders.v1", customer, event)
    else:  # pragma: no cover - CI installs kcat; a bare machine may not have it
        asyncio.run(produce(stack.bootstrap, "orders.v1", [(customer, event)]))

    def shown() -> dict[str, object]:
        response = archive.get(f"/customers/{customer}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    record = eventually(shown, timeout=5)
    assert record["value"]["order_count"] == 1
    assert record["value"]["net_spent"] == "129.90"
    assert record["stub"] is True


def test_a_bad_message_is_dead_lettered_and_the_partition_keeps_flowing(
    stack: Stack, archive: ServiceProcess
) -> None:
    customer = unique("c")
    bad = b'{"specversion": "1.0", "type": "order.placed", "subject": "' + customer.encode() + b'"}'
    good = order_placed(customer, "o-2", "10.00")
    asyncio.run(produce(stack.bootstrap, "orders.v1", [(customer, bad), (customer, good)]))

    def found() -> dict[str, Any]:
        response = archive.get(f"/customers/{customer}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    record = eventually(found, timeout=10)
    # the good message behind the bad one was processed
    assert record["value"]["order_count"] == 1

    letters = asyncio.run(
        collect(
            stack.bootstrap,
            "archive.dlq.v1",
            lambda r: r.key == customer.encode(),
            until=lambda kept: len(kept) >= 1,
        )
    )
    assert len(letters) == 1
    headers = {k: v.decode() for k, v in letters[0].headers}
    assert letters[0].value == bad
    assert headers["x-dlq-source-topic"] == "orders.v1"
    assert headers["x-dlq-exception"] == "EventDecodeError"
    assert "invalid event" in headers["x-dlq-reason"]
    assert "id: Field required" in headers["x-dlq-reason"]
    assert headers["x-dlq-consumer-group"] == archive.env["CRM_ARCHIVE_CONSUMER_GROUP"]


def test_a_poison_message_shows_in_get_dead_letters_with_its_reason_and_no_payload(
    stack: Stack, archive: ServiceProcess
) -> None:
    customer, event_id = unique("c"), unique("e")
    phone = "13912345678"
    poison = json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "type": "order.placed",
            "subject": customer,
            "data": {"note": f"call {phone}"},
        }
    ).encode()  # no `source`, no `time`: not a valid event
    asyncio.run(produce(stack.bootstrap, "orders.v1", [(customer, poison)]))

    def listed() -> dict[str, Any]:
        answer = archive.get("/dead-letters", limit=200)
        assert answer.status_code == 200, answer.text
        mine = [item for item in answer.json()["items"] if item["event_id"] == event_id]
        assert mine, "not listed yet"
        return {"page": answer.json(), "letter": mine[0]}

    found = eventually(listed, timeout=30)
    letter, page = found["letter"], found["page"]
    assert page["service"] == "archive"
    assert page["topic"] == "archive.dlq.v1"
    assert page["total"] >= 1
    assert letter["event_type"] == "order.placed"
    assert letter["source_topic"] == "orders.v1"
    assert letter["exception"] == "EventDecodeError"
    assert "invalid event" in letter["reason"]
    assert letter["at"] is not None
    assert customer not in json.dumps(page)
    assert phone not in json.dumps(page)


def test_http_errors_are_json_4xx(archive: ServiceProcess) -> None:
    import httpx

    assert httpx.get(archive.url + "/customers/x").status_code == 401
    wrong = httpx.get(archive.url + "/customers/x", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthorized"
    missing = archive.get(f"/customers/{unique('nobody')}")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert archive.get("/customers/has%20space").status_code == 422


def test_operations_endpoints(archive: ServiceProcess) -> None:
    import httpx

    assert httpx.get(archive.url + "/healthz").json()["status"] == "ok"
    ready = httpx.get(archive.url + "/readyz").json()
    assert ready["ready"]
    assert ready["partitions_assigned"] == 12 * 7, "seven consumed topics of 12 partitions"
    assert "crm_events_processed_total" in httpx.get(archive.url + "/metrics").text
    spec = httpx.get(archive.url + "/asyncapi.json").json()
    assert spec["asyncapi"].startswith("3.")
    page = httpx.get(archive.url + "/asyncapi").text
    assert "AsyncApiTryItPlugin" not in page


def test_a_new_customer_is_announced_once_on_archive_v1(
    stack: Stack, archive: ServiceProcess
) -> None:
    customer = unique("c")
    asyncio.run(
        produce(
            stack.bootstrap,
            "orders.v1",
            [
                (customer, order_placed(customer, "o-1", "1.00")),
                (customer, order_placed(customer, "o-2", "2.00")),
            ],
        )
    )
    announced = asyncio.run(
        collect(
            stack.bootstrap,
            "archive.v1",
            lambda r: r.key == customer.encode(),
            until=lambda kept: len(kept) > 3,
            timeout=6,
        )
    )
    assert [json.loads(r.value)["type"] for r in announced] == [
        "customer.created",
        "customer.grade_changed",
        "customer.lifecycle_changed",
    ], "only real changes are announced: the second order changes neither grade nor stage"
