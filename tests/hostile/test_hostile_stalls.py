"""Nothing stalls: one record, text or request that used to stop a whole service now fails
alone, with a reason, while everything else flows (issue "Nothing stalls", items 1, 2, 3, 7, 9).

- Orders compressed with each codec Kafka clients use (kcat: gzip, snappy, lz4, zstd) are
  applied; a batch the client cannot read (a consumer without the codec libraries) is
  dead-lettered as a range of offsets and the partition moves on.
- A 1 MB `type`, `subject`, `id` or data string is dead-lettered with a clipped reason, while
  `/healthz` keeps answering.
- A record at the broker's maximum size becomes a dead letter that fits (cut, with its hash).
- Two sources numbering their events alike are both applied.
- A 50 MB body is refused (401 without a token, 413 with one) before it is read.
"""

import asyncio
import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from stackutil import ServiceProcess, Stack, collect, eventually, produce

pytestmark = [pytest.mark.hostile, pytest.mark.slow]
CODECS = ("gzip", "snappy", "lz4", "zstd")
BROKER_MAX = 1_048_588
"""Kafka's default `message.max.bytes`, which the local stack keeps."""


@pytest.fixture(scope="module")
def services(stack: Stack) -> Iterator[dict[str, ServiceProcess]]:
    started = {
        name: ServiceProcess.isolated(name, stack, sweeps_enabled="false").start()
        for name in ("archive", "loyalty")
    }
    yield started
    for service in started.values():
        service.stop()


def customer_id() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def order(customer: str, *, source: str = "hostile", event_id: str | None = None) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": "order.placed",
        "subject": customer,
        "time": datetime.now(UTC).isoformat(),
        "data": {"order_id": f"o-{uuid.uuid4().hex[:8]}", "amount": "10.00", "currency": "CNY"},
    }


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


def orders_of(archive: ServiceProcess, customer: str) -> int:
    response = archive.get(f"/customers/{customer}")
    return int(response.json()["value"]["order_count"]) if response.status_code == 200 else 0


def has_one_order(archive: ServiceProcess, customer: str) -> bool:
    return orders_of(archive, customer) == 1


def points_of(loyalty: ServiceProcess, customer: str) -> int:
    response = loyalty.get(f"/accounts/{customer}")
    return int(response.json()["balance"]) if response.status_code == 200 else 0


def kcat(stack: Stack, codec: str, key: str, value: bytes) -> None:
    subprocess.run(
        ["kcat", "-b", stack.bootstrap, "-t", "orders.v1", "-k", key, "-z", codec, "-P"],
        input=value,
        check=True,
        timeout=30,
    )


def letters(stack: Stack, service: str, keep: Any, want: int) -> list[Any]:
    return asyncio.run(
        collect(
            stack.bootstrap,
            f"{service}.dlq.v1",
            keep,
            until=lambda kept: len(kept) >= want,
            timeout=90,
        )
    )


def headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


# -- 1. compression ----------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by .ci/run")
@pytest.mark.parametrize("codec", CODECS)
def test_an_order_compressed_with_each_codec_is_applied(
    stack: Stack, services: dict[str, ServiceProcess], codec: str
) -> None:
    """Old: `UnsupportedCodecError: Libraries for lz4 compression codec not found` on every
    fetch, forever; the order was never applied."""
    customer = customer_id()
    kcat(stack, codec, customer, raw(order(customer)))
    eventually(lambda: orders_of(services["archive"], customer) == 1, timeout=60)
    eventually(lambda: points_of(services["loyalty"], customer) > 0, timeout=60)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by .ci/run")
def test_a_batch_the_client_cannot_read_is_dead_lettered_and_the_partition_moves_on(
    stack: Stack, tmp_path: Path
) -> None:
    """A consumer without the codec libraries (cramjam hidden from its imports) meets an lz4
    batch: one dead letter names the offsets, and the next, uncompressed order on the same
    partition is applied. (The suite's own services publish zstd, so this consumer also
    dead-letters what it reads of theirs: only the orders are looked at here.)"""
    shadow = tmp_path / "cramjam"
    shadow.mkdir()
    (shadow / "__init__.py").write_text('raise ImportError("hidden: no codec libraries")\n')
    archive = ServiceProcess.isolated(
        "archive", stack, sweeps_enabled="false", kafka_compression_type="none"
    )
    archive.env["PYTHONPATH"] = str(tmp_path)
    archive.start()
    try:
        customer = customer_id()
        kcat(stack, "lz4", customer, raw(order(customer)))
        asyncio.run(produce(stack.bootstrap, "orders.v1", [(customer, raw(order(customer)))]))
        eventually(lambda: orders_of(archive, customer) == 1, timeout=90)
        group = archive.env["CRM_ARCHIVE_CONSUMER_GROUP"]
        found = letters(
            stack,
            "archive",
            lambda r: (
                headers(r).get("x-dlq-consumer-group") == group
                and headers(r).get("x-dlq-source-topic") == "orders.v1"
            ),
            1,
        )
        assert len(found) == 1, [
            {k: v for k, v in headers(r).items() if "source" in k or "last" in k} for r in found
        ]
        said = headers(found[0])
        assert "UnsupportedCodecError" in said["x-dlq-reason"]
        assert said["x-dlq-source-offset"] == said["x-dlq-last-offset"]
        assert found[0].value in (b"", None)
        assert archive.get("/readyz").json()["ready"]
    finally:
        archive.stop()


# -- 2. huge texts -----------------------------------------------------------------------------
class Pulse:
    """Asks `/healthz` every 0.2 s from a thread; remembers every miss (no answer in 2 s)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.asked = 0
        self.misses: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.asked += 1
            try:
                httpx.get(self.url + "/healthz", timeout=2).raise_for_status()
            except Exception as exc:
                self.misses.append(type(exc).__name__)
            time.sleep(0.2)

    def __enter__(self) -> "Pulse":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_megabyte_texts_are_dead_lettered_while_healthz_answers(
    stack: Stack, services: dict[str, ServiceProcess]
) -> None:
    """Old: a ~1 MB unknown `type` went whole into the dead-letter reason and the log line
    through a quadratic redaction: about an hour of CPU with /healthz silent."""
    archive = services["archive"]
    size = 990_000
    cases: dict[str, tuple[str, bytes]] = {}
    for field in ("type", "subject", "id", "data"):
        customer = customer_id()
        event = order(customer)
        if field == "data":
            event["data"]["order_id"] = "9" * size
        else:
            event[field] = ("1" if field == "id" else "a") * size
        cases[field] = (customer, raw(event))
    with Pulse(archive.url) as pulse:
        for customer, value in cases.values():
            asyncio.run(produce(stack.bootstrap, "orders.v1", [(customer, value)]))
            asyncio.run(produce(stack.bootstrap, "orders.v1", [(customer, raw(order(customer)))]))
        keys = {customer for customer, _ in cases.values()}
        found = letters(stack, "archive", lambda r: r.key and r.key.decode() in keys, len(keys))
        for customer in keys:
            eventually(partial(has_one_order, archive, customer), timeout=60)
    assert {r.key.decode() for r in found} == keys
    for record in found:
        assert len(headers(record)["x-dlq-reason"]) <= 1000
    # How many asks fit depends on the machine's load (2 on a busy CI run); a frozen loop shows
    # as a miss, or as letters that never come.
    assert pulse.asked >= 1
    assert pulse.misses == [], f"/healthz missed {len(pulse.misses)} of {pulse.asked}"


# -- 3. a record at the broker's maximum size --------------------------------------------------
def test_a_record_at_the_brokers_maximum_size_is_dead_lettered_cut_with_its_hash(
    stack: Stack, services: dict[str, ServiceProcess]
) -> None:
    """Old: the dead letter (the record plus its headers) was over the producer's
    `max_request_size`; `MessageSizeTooLargeError` rewound the batch, forever."""
    customer = customer_id()
    value = b'{"pad": "' + b"x" * (BROKER_MAX - 300) + b'"}'

    async def send_big() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=stack.bootstrap, max_request_size=2 * BROKER_MAX, acks="all"
        )
        await producer.start()
        try:
            await producer.send_and_wait("orders.v1", value, key=customer.encode())
            await producer.send_and_wait("orders.v1", raw(order(customer)), key=customer.encode())
        finally:
            await producer.stop()

    asyncio.run(send_big())
    archive, loyalty = services["archive"], services["loyalty"]
    eventually(lambda: orders_of(archive, customer) == 1, timeout=60)
    eventually(lambda: points_of(loyalty, customer) > 0, timeout=60)
    for service in ("archive", "loyalty"):
        [letter] = letters(stack, service, lambda r: r.key == customer.encode(), 1)
        said = headers(letter)
        assert said["x-dlq-value-sha256"] == hashlib.sha256(value).hexdigest()
        assert f"value {len(value)} bytes" in said["x-dlq-cut"]
        assert value.startswith(letter.value)
        assert 0 < len(letter.value) < len(value)


# -- 9. the inbox tells sources apart ----------------------------------------------------------
def test_two_sources_with_the_same_event_ids_are_both_applied(
    stack: Stack, services: dict[str, ServiceProcess]
) -> None:
    """Old: the inbox keyed on `id` alone, so the second source's event 1 was taken for a
    redelivery of the first's and silently dropped."""
    customer = customer_id()
    shared = f"evt-{uuid.uuid4().hex[:6]}"
    events = [
        (customer, raw(order(customer, source="shop-east", event_id=shared))),
        (customer, raw(order(customer, source="shop-west", event_id=shared))),
        (customer, raw(order(customer, source="shop-west", event_id=shared))),  # redelivered
    ]
    asyncio.run(produce(stack.bootstrap, "orders.v1", events))
    archive, loyalty = services["archive"], services["loyalty"]
    eventually(lambda: orders_of(archive, customer) == 2, timeout=60)
    eventually(lambda: points_of(loyalty, customer) == 20, timeout=60)
    time.sleep(2)  # the redelivered copy must change nothing
    assert (orders_of(archive, customer), points_of(loyalty, customer)) == (2, 20)


# -- 7. bodies before tokens -------------------------------------------------------------------
def first_answer(port: int, head: bytes, sent_body: int) -> bytes:
    """Send `head` and `sent_body` bytes of a body that says it is 50 MB, then read the
    status line: the service must answer without waiting for the rest."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"x" * sent_body)
        return sock.recv(200).split(b"\r\n", 1)[0]


@pytest.mark.parametrize(("token", "status"), [(None, b"401"), ("crm-dev-token", b"413")])
def test_a_50_mb_body_is_refused_before_it_is_read(
    services: dict[str, ServiceProcess], token: str | None, status: bytes
) -> None:
    """Old: without a token a 50 MB body was read and parsed, then 401; malformed JSON without
    a token got 422. Now the answer comes after 64 KiB of the 50 MB were sent."""
    archive = services["archive"]
    port = int(archive.url.rsplit(":", 1)[1])
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    head = (
        b"PATCH /customers/c1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + auth
        + f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode()
    )
    assert status in first_answer(port, head, 64 * 1024)
    garbled = httpx.patch(archive.url + "/customers/c1", content=b"{oops", timeout=10)
    assert garbled.status_code == 401
    assert archive.get("/healthz").status_code == 200


def test_the_inbox_keeps_its_marks_for_a_retention(services: dict[str, ServiceProcess]) -> None:
    from pymongo import MongoClient

    archive = services["archive"]
    database = archive.env["CRM_ARCHIVE_DATABASE"]
    client: MongoClient[dict[str, Any]]
    with MongoClient(archive.stack.mongodb_url) as client:
        indexes = client[database]["processed_events"].index_information()
    assert indexes["retention"]["expireAfterSeconds"] == 30 * 24 * 3600
