"""Runtime pieces that need no broker or database: classification, redaction, auth, batching."""

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import errors as kafka_errors
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pymongo import errors as mongo_errors
from pymongo.errors import BulkWriteError

from crm_contracts import CloudEvent
from crm_runtime.auth import Authenticator, Principal
from crm_runtime.consumer import BatchConsumer
from crm_runtime.dlq import DeadLetters, InboundRecord
from crm_runtime.errors import ConcurrencyConflictError, is_transient
from crm_runtime.health import Health
from crm_runtime.logs import redact
from crm_runtime.metrics import RuntimeMetrics
from crm_runtime.mongo import only_duplicate_keys
from crm_runtime.retry import Backoff

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "exc",
    [
        mongo_errors.ServerSelectionTimeoutError("down"),
        mongo_errors.AutoReconnect("gone"),
        mongo_errors.OperationFailure("conflict", code=112),
        kafka_errors.KafkaConnectionError(),
        kafka_errors.KafkaTimeoutError(),
        ConcurrencyConflictError("raced"),
        ConnectionRefusedError(),
        TimeoutError(),
    ],
)
def test_outages_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc", [ValueError("bad"), KeyError("k"), mongo_errors.OperationFailure("bad", code=2)]
)
def test_bugs_and_bad_data_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_only_duplicate_keys() -> None:
    dup = BulkWriteError({"writeErrors": [{"code": 11000}, {"code": 11000}], "nInserted": 3})
    mixed = BulkWriteError({"writeErrors": [{"code": 11000}, {"code": 121}], "nInserted": 3})
    assert only_duplicate_keys(dup)
    assert not only_duplicate_keys(mixed)
    assert not only_duplicate_keys(BulkWriteError({"writeErrors": []}))


def test_redact_masks_emails_and_phone_numbers() -> None:
    text = redact("mail li.lei+x@example.cn or call +86 138-0013-8000, order o-12345 ok")
    assert "example.cn" not in text
    assert "138" not in text
    assert "o-12345" in text


def test_roles() -> None:
    auth = Authenticator({"agent-token": ["agent"], "ops-token": ["ops"]})
    app = FastAPI()

    @app.get("/agents-only")
    def agents_only(principal: Principal = Depends(auth.require("agent"))) -> dict[str, str]:  # noqa: B008
        return {"token": principal.token_id}

    client = TestClient(app)
    assert client.get("/agents-only").status_code == 401
    assert client.get("/agents-only", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert (
        client.get("/agents-only", headers={"Authorization": "Bearer ops-token"}).status_code == 403
    )
    ok = client.get("/agents-only", headers={"Authorization": "Bearer agent-token"})
    assert ok.status_code == 200
    assert "agent-token" not in ok.text


def test_unknown_roles_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="unknown roles"):
        Authenticator({"t": ["admin"]})
    with pytest.raises(ValueError, match="unknown roles"):
        Authenticator({"t": {"user": "agent-07", "roles": ["admin"]}})


# -- BatchConsumer with in-memory collaborators -------------------------------------------------
def event_bytes(event_id: str, subject: str = "c1", amount: str = "10.00") -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "t",
            "type": "order.placed",
            "subject": subject,
            "time": "2026-01-01T00:00:00Z",
            "data": {"order_id": f"o-{event_id}", "amount": amount, "currency": "CNY"},
        }
    ).encode()


def record(offset: int, value: bytes | None, key: bytes | None = b"c1") -> InboundRecord:
    return InboundRecord("orders.v1", 0, offset, key, value)


class Recorder:
    """A batch handler that remembers what it persisted and can be told to fail."""

    def __init__(self, poison: set[str] | None = None, outages: int = 0) -> None:
        self.persisted: list[str] = []
        self.poison = poison or set()
        self.outages = outages
        self.calls = 0

    async def __call__(self, events: Sequence[CloudEvent[Any]]) -> int:
        self.calls += 1
        if self.outages:
            self.outages -= 1
            raise mongo_errors.AutoReconnect("database restarting")
        if any(e.id in self.poison for e in events):
            raise ValueError("this event breaks a rule")
        self.persisted.extend(e.id for e in events)
        return len(events)


def make_consumer(
    handler: Recorder, health: Health | None = None, holder: str = ""
) -> tuple[BatchConsumer, list[tuple[str, dict[str, str]]], Health]:
    sent: list[tuple[str, dict[str, str]]] = []

    async def send(topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        sent.append((topic, headers))

    health = health or Health()
    consumer = BatchConsumer(
        handler,
        DeadLetters(send, service="archive", consumer_group="archive"),
        health=health,
        metrics=RuntimeMetrics(CollectorRegistry(), "archive"),
        backoff=Backoff(0.001, 0.002),
        accepted_types=["order.placed"],
        holder=holder,
    )
    return consumer, sent, health


async def test_a_bad_message_goes_to_the_dlq_and_the_rest_is_persisted() -> None:
    handler = Recorder()
    consumer, sent, _ = make_consumer(handler)
    await consumer.process(
        [record(0, event_bytes("a")), record(1, b"{oops"), record(2, event_bytes("b"))]
    )
    assert handler.persisted == ["a", "b"]
    assert len(sent) == 1
    topic, headers = sent[0]
    assert topic == "archive.dlq.v1"
    assert headers["x-dlq-source-offset"] == "1"
    assert headers["x-dlq-source-topic"] == "orders.v1"
    assert "not JSON" in headers["x-dlq-reason"]
    assert headers["x-dlq-consumer-group"] == "archive"


async def test_a_message_whose_handler_fails_is_isolated_and_dead_lettered() -> None:
    handler = Recorder(poison={"b"})
    consumer, sent, _ = make_consumer(handler)
    await consumer.process([record(i, event_bytes(x)) for i, x in enumerate("abc")])
    assert handler.persisted == ["a", "c"]
    assert [h["x-dlq-source-offset"] for _, h in sent] == ["1"]
    assert sent[0][1]["x-dlq-exception"] == "ValueError"


async def test_transient_failures_are_retried_not_dead_lettered() -> None:
    handler = Recorder(outages=3)
    consumer, sent, health = make_consumer(handler)
    await consumer.process([record(0, event_bytes("a"))])
    assert handler.persisted == ["a"]
    assert handler.calls == 4
    assert sent == []
    assert health.problems() == {}


async def test_readiness_is_red_while_retrying() -> None:
    handler = Recorder(outages=10_000)
    consumer, _, health = make_consumer(handler)
    task = asyncio.create_task(consumer.process([record(0, event_bytes("a"))]))
    await asyncio.sleep(0.05)
    assert "consumer.apply" in health.problems()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_readiness_stays_red_while_one_of_two_consumers_retries() -> None:
    """A process with two consumers (the archive's, ADR 0026) shares one readiness: the other
    consumer applying its batches must not clear the check the retrying one holds."""
    retrying, applying = Recorder(outages=10_000), Recorder()
    first, _, health = make_consumer(retrying, holder="1 of 2")
    second, _, _ = make_consumer(applying, health, holder="2 of 2")
    task = asyncio.create_task(first.process([record(0, event_bytes("a"))]))
    await asyncio.sleep(0.05)
    await second.process([record(1, event_bytes("b"))])
    assert applying.persisted == ["b"]
    assert "consumer.apply" in health.problems(), "still retrying: not ready"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, event_bytes("a"), "key"),
        (b"c2", event_bytes("a"), "key"),
        (b"c1", None, "tombstone"),
        (b"c1", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"c1", b"\xff\xfe{}", "not JSON"),
        (
            b"c1",
            event_bytes("a").replace(b"order.placed", b"customer.erasure_requested"),
            "does not belong on topic",
        ),
    ],
)
async def test_records_that_break_the_envelope_rules_are_dead_lettered(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    handler = Recorder()
    consumer, sent, _ = make_consumer(handler)
    await consumer.process([record(0, value, key)])
    assert handler.persisted == []
    assert reason in sent[0][1]["x-dlq-reason"]


async def test_a_decoder_crash_dead_letters_the_record_and_the_rest_flows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import crm_runtime.consumer as consumer_module
    from crm_contracts import decode_envelope as real

    def flaky(raw: bytes | str) -> CloudEvent[Any]:
        if b"boom" in (raw if isinstance(raw, bytes) else raw.encode()):
            raise KeyError("a bug")
        return real(raw)

    monkeypatch.setattr(consumer_module, "decode_envelope", flaky)
    handler = Recorder()
    consumer, sent, _ = make_consumer(handler)
    await consumer.process([record(0, event_bytes("boom")), record(1, event_bytes("a"))])
    assert handler.persisted == ["a"]
    assert sent[0][1]["x-dlq-reason"] == "could not be decoded: KeyError"


async def test_an_external_event_from_the_far_future_is_dead_lettered_our_own_are_not() -> None:
    from datetime import UTC, datetime, timedelta

    def at(moment: datetime, event_id: str) -> bytes:
        return event_bytes(event_id).replace(b"2026-01-01T00:00:00Z", moment.isoformat().encode())

    now = datetime.now(UTC)
    handler = Recorder()
    consumer, sent, _ = make_consumer(handler)
    drifted, future = at(now + timedelta(hours=2), "a"), at(now + timedelta(days=400), "b")
    await consumer.process([record(0, drifted), record(1, future)])
    assert handler.persisted == ["a"], "a source clock a little ahead is fine"
    assert "more than a day in the future" in sent[0][1]["x-dlq-reason"]
    # The services' own topics may carry a simulated clock (sweeps run as of another time).
    from crm_runtime.consumer import EXTERNAL_TOPICS

    assert {"orders.v1", "members.v1", "callcenter.v1"} == EXTERNAL_TOPICS


async def test_valid_events_of_the_topic_that_we_do_not_use_are_skipped_not_dead_lettered() -> None:
    handler = Recorder()
    consumer, sent, _ = make_consumer(handler)
    cancelled = event_bytes("x").replace(b"order.placed", b"order.cancelled")
    await consumer.process([record(0, cancelled), record(1, event_bytes("a"))])
    assert handler.persisted == ["a"]
    assert sent == []


def test_cursors_round_trip_and_bad_ones_are_400() -> None:
    from fastapi import HTTPException

    from crm_runtime.paging import decode_cursor, encode_cursor

    position = {"t": "2026-01-01T00:00:00+00:00", "id": "c1"}
    assert decode_cursor(encode_cursor(position)) == position
    assert decode_cursor(None) is None
    for bad in ["%%%", "bm90IGpzb24", encode_cursor({"a": 1})[:-3] + "!!", "WzFd"]:
        with pytest.raises(HTTPException) as caught:
            decode_cursor(bad)
        assert caught.value.status_code == 400


async def test_readiness_turns_green_again_when_the_relay_recovers() -> None:
    from crm_runtime.outbox import OutboxRelay

    class Flaky(OutboxRelay):
        def __init__(self) -> None:
            super().__init__(None, None, poll_interval_s=0.01)  # type: ignore[arg-type]
            self.failures = 2

        async def relay_once(self) -> int:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("database away")
            return 0

    health = Health()
    relay = Flaky()
    task = asyncio.create_task(
        relay.run(
            lambda exc: health.fail("outbox.relay", type(exc).__name__),
            lambda: health.ok("outbox.relay"),
        )
    )
    for _ in range(200):
        await asyncio.sleep(0.01)
        if relay.failures == 0 and not health.problems():
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert relay.failures == 0, "it failed twice"
    assert health.problems() == {}, "and said so when it worked again"


def test_the_relay_finds_the_brokers_aiokafka_producer() -> None:
    """`kafka_producer` reaches into FastStream (no public accessor): an upgrade that moves the
    producer fails here, not in the relay."""
    from faststream.exceptions import IncorrectState
    from faststream.kafka import KafkaBroker

    from crm_runtime.kafka import kafka_producer

    broker = KafkaBroker("localhost:9092")
    with pytest.raises(IncorrectState):  # not started: the relay reports it and retries
        kafka_producer(broker)


async def test_the_relay_publishes_through_the_producer_the_broker_connected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiokafka import AIOKafkaProducer
    from faststream.kafka import KafkaBroker

    from crm_runtime.kafka import kafka_producer

    async def started(self: AIOKafkaProducer) -> None:
        return None

    async def stopped(self: AIOKafkaProducer) -> None:
        self._closed = True

    monkeypatch.setattr(AIOKafkaProducer, "start", started)
    monkeypatch.setattr(AIOKafkaProducer, "stop", stopped)
    broker = KafkaBroker("localhost:9092")
    producer = AIOKafkaProducer(bootstrap_servers="localhost:9092")
    fast: Any = broker.config.producer  # FastStream's producer, holding the aiokafka one
    await fast.connect(producer, None)
    assert kafka_producer(broker) is producer
    await fast.disconnect()
