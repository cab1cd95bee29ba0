"""One message, text or request must not stop a service: redaction stays linear on any input,
dead letters always fit or fail alone, the inbox tells sources apart, and the request guard
refuses before reading. No broker, no database."""

import asyncio
import hashlib
import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import CollectorRegistry

from crm_contracts import EventDecodeError, decode_event
from crm_runtime.auth import Authenticator
from crm_runtime.consumer import BatchConsumer
from crm_runtime.dlq import (
    CUT,
    LAST_OFFSET,
    LETTER_MAX,
    VALUE_KEPT,
    VALUE_SHA256,
    DeadLetters,
    InboundRecord,
    bounded,
)
from crm_runtime.guard import RequestGuard
from crm_runtime.health import Health
from crm_runtime.logs import TEXT_MAX, JsonFormatter, redact
from crm_runtime.metrics import RuntimeMetrics
from crm_runtime.mongo import inbox_key
from crm_runtime.retry import Backoff

pytestmark = pytest.mark.unit


# -- redaction ---------------------------------------------------------------------------------
@pytest.mark.timeout(20)
@pytest.mark.parametrize("word", ["a" * 300_000, "1" * 300_000, "a." * 150_000, "x@" * 150_000])
def test_redaction_of_a_long_word_is_linear(word: str) -> None:
    """The old email pattern took 6 s on 32 KB and hours on 1 MB (quadratic); unclipped, these
    300 KB words would take minutes: the timeout fails it."""
    assert len(redact(word, limit=len(word))) == len(word)


def test_every_logged_text_is_clipped_before_it_is_redacted() -> None:
    clipped = redact("9" * 1_000_000)
    assert len(clipped) < TEXT_MAX + 50
    assert clipped.endswith("more characters]")


def test_redaction_still_masks_emails_and_phones() -> None:
    masked = redact("mail li.lei+crm@example.com.cn or call +86 138 0013 8000 now")
    assert masked == "mail [email] or call [phone] now"


def test_a_log_line_with_a_megabyte_field_is_clipped() -> None:
    import logging

    record = logging.makeLogRecord({"msg": "x" * 1_000_000, "type": "y" * 1_000_000})
    line = json.loads(JsonFormatter("archive").format(record))
    assert len(line["message"]) < TEXT_MAX + 50
    assert len(line["type"]) < TEXT_MAX + 50


def test_the_decoders_errors_echo_a_bounded_part_of_the_input() -> None:
    with pytest.raises(EventDecodeError) as raised:
        decode_event(json.dumps({"type": "t" * 1_000_000}))
    assert len(str(raised.value)) < 200


# -- dead letters ------------------------------------------------------------------------------
def test_a_letter_that_fits_keeps_key_and_value_byte_for_byte() -> None:
    letter = bounded(b"c1", b"v" * 1000, {"x": "y"})
    assert (letter.key, letter.value, letter.headers) == (b"c1", b"v" * 1000, {"x": "y"})


def test_a_letter_too_large_for_a_record_keeps_a_prefix_and_the_hash_of_the_whole() -> None:
    value = b"v" * 1_048_000
    letter = bounded(b"k" * 5000, value, {})
    assert letter.value == value[:VALUE_KEPT]
    assert letter.key == b"k" * 1024
    assert letter.headers[VALUE_SHA256] == hashlib.sha256(value).hexdigest()
    assert "value 1048000 bytes" in letter.headers[CUT]
    assert len(letter.value) + len(letter.key or b"") < LETTER_MAX


def _consumer(send: Any) -> tuple[BatchConsumer, RuntimeMetrics]:
    metrics = RuntimeMetrics(CollectorRegistry(), "archive")
    consumer = BatchConsumer(
        lambda events: asyncio.sleep(0, len(events)),
        DeadLetters(send, service="archive", consumer_group="archive"),
        health=Health(),
        metrics=metrics,
        backoff=Backoff(0.001, 0.002),
        accepted_types=["order.placed"],
    )
    return consumer, metrics


async def test_a_refused_letter_is_sent_bare_and_the_batch_goes_on() -> None:
    sent: list[tuple[bytes | None, bytes, dict[str, str]]] = []

    async def send(topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        if value:
            raise MessageSizeTooLargeError()
        sent.append((key, value, headers))

    consumer, _ = _consumer(send)
    await consumer.process([InboundRecord("orders.v1", 3, 7, b"c1", b"{oops")])
    [(key, value, headers)] = sent
    assert (key, value) == (None, b"")
    assert headers[VALUE_SHA256] == hashlib.sha256(b"{oops").hexdigest()
    assert headers["x-dlq-source-offset"] == "7"


async def test_a_letter_that_cannot_be_sent_at_all_does_not_stall_the_batch() -> None:
    async def send(topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        raise MessageSizeTooLargeError()

    consumer, metrics = _consumer(send)
    await consumer.process([InboundRecord("orders.v1", 3, 7, b"c1", b"{oops")])
    assert metrics.dead_letters.labels("archive", "unsent")._value.get() == 1


async def test_an_unreadable_batch_is_one_letter_for_its_offsets() -> None:
    sent: list[dict[str, str]] = []

    async def send(topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        sent.append(headers)

    consumer, _ = _consumer(send)
    await consumer.unreadable("orders.v1", 2, 40, 59, ValueError("codec"))
    [headers] = sent
    assert (headers["x-dlq-source-offset"], headers[LAST_OFFSET]) == ("40", "59")
    assert "offsets 40..59" in headers["x-dlq-reason"]


# -- inbox -------------------------------------------------------------------------------------
def _event(source: str, event_id: str) -> Any:
    return decode_event(
        json.dumps(
            {
                "specversion": "1.0",
                "id": event_id,
                "source": source,
                "type": "order.placed",
                "subject": "c1",
                "time": "2026-01-01T00:00:00Z",
                "data": {"order_id": "o-1", "amount": "1.00", "currency": "CNY"},
            }
        )
    )


def test_the_inbox_keys_an_event_by_source_and_id() -> None:
    assert inbox_key(_event("shop", "1")) != inbox_key(_event("pos", "1"))
    assert inbox_key(_event("a/b", "c")) != inbox_key(_event("a", "b/c"))
    assert inbox_key(_event("shop", "1")) == inbox_key(_event("shop", "1"))


# -- the request guard -------------------------------------------------------------------------
class Downstream:
    """An ASGI app that records whether it ran and what body it read."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await self.gate.wait()
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(
    guard: RequestGuard,
    path: str,
    headers: dict[str, str],
    chunks: list[bytes],
) -> tuple[int, int]:
    """(status, how many body chunks the guard or the app took)."""
    taken = 0
    answers: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal taken
        taken += 1
        last = taken >= len(chunks)
        return {
            "type": "http.request",
            "body": chunks[taken - 1] if taken <= len(chunks) else b"",
            "more_body": not last,
        }

    async def send(message: MutableMapping[str, Any]) -> None:
        answers.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await guard(scope, receive, send)
    return answers[0]["status"], taken


def guard_for(app: Downstream, **limits: int) -> RequestGuard:
    return RequestGuard(
        app,
        auth=Authenticator({"t0k": ["agent"]}),
        max_body_bytes=limits.get("max_body_bytes", 65536),
        max_concurrent=limits.get("max_concurrent", 64),
    )


async def test_no_token_is_401_before_the_body_is_read() -> None:
    app = Downstream()
    status, taken = await call(
        guard_for(app), "/tickets", {"content-length": "50000000"}, [b"x" * 1000] * 3
    )
    assert (status, taken, app.bodies) == (401, 0, [])
    status, taken = await call(guard_for(app), "/tickets", {"authorization": "Bearer nope"}, [b"{"])
    assert (status, taken) == (401, 0)


async def test_a_declared_large_body_is_413_unread() -> None:
    app = Downstream()
    headers = {"authorization": "Bearer t0k", "content-length": str(50 * 1024 * 1024)}
    assert await call(guard_for(app), "/tickets", headers, [b"x"]) == (413, 0)


async def test_a_chunked_body_is_cut_off_at_the_limit() -> None:
    app = Downstream()
    headers = {"authorization": "Bearer t0k", "transfer-encoding": "chunked"}
    status, taken = await call(
        guard_for(app, max_body_bytes=2048), "/tickets", headers, [b"x" * 1024] * 100
    )
    assert (status, taken, app.bodies) == (413, 3, [])
    status, _ = await call(guard_for(app), "/tickets", headers, [b"{}", b"[]"])
    assert (status, app.bodies) == (200, [b"{}[]"])


async def test_open_paths_need_no_token() -> None:
    app = Downstream()
    assert (await call(guard_for(app), "/healthz", {}, [b""]))[0] == 200
    assert (await call(guard_for(app), "/openapi.json", {}, [b""]))[0] == 200


async def test_requests_over_the_concurrency_cap_are_503_but_probes_answer() -> None:
    app = Downstream()
    app.gate.clear()
    guard = guard_for(app, max_concurrent=2)
    token = {"authorization": "Bearer t0k", "content-length": "0"}
    held = [asyncio.create_task(call(guard, "/tickets", token, [b""])) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert (await call(guard, "/tickets", token, [b""]))[0] == 503
    app.gate.set()
    assert (await call(guard, "/healthz", {}, [b""]))[0] == 200
    assert [status for status, _ in await asyncio.gather(*held)] == [200, 200]


# -- isolating a bad event ---------------------------------------------------------------------
async def test_one_bad_event_in_500_is_isolated_by_bisection_in_about_18_transactions() -> None:
    """Before, the batch was replayed one event per transaction: 501 calls."""
    calls: list[int] = []
    applied: list[str] = []

    async def handle(events: Any) -> int:
        calls.append(len(events))
        if any(e.id == "e137" for e in events):
            raise ValueError("this event breaks a rule")
        applied.extend(e.id for e in events)
        return len(events)

    sent: list[dict[str, str]] = []

    async def send(topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        sent.append(headers)

    consumer = BatchConsumer(
        handle,
        DeadLetters(send, service="archive", consumer_group="archive"),
        health=Health(),
        metrics=RuntimeMetrics(CollectorRegistry(), "archive"),
        backoff=Backoff(0.001, 0.002),
        accepted_types=["order.placed"],
    )
    records = [
        InboundRecord("orders.v1", 0, n, b"c1", json.dumps(_order(f"e{n}")).encode())
        for n in range(500)
    ]
    await consumer.process(records)
    assert applied == [f"e{n}" for n in range(500) if n != 137], "in order, all but the bad one"
    assert [h["x-dlq-source-offset"] for h in sent] == ["137"]
    assert len(calls) <= 2 * 9 + 1


def test_a_write_conflict_is_transient_however_the_store_words_it() -> None:
    from pymongo.errors import OperationFailure

    from crm_runtime.errors import is_transient

    assert is_transient(OperationFailure("Write conflict during commit", code=1))
    assert is_transient(OperationFailure("WriteConflict", code=8000))
    assert not is_transient(OperationFailure("document failed validation", code=121))


def _order(event_id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "t",
        "type": "order.placed",
        "subject": "c1",
        "time": "2026-01-01T00:00:00Z",
        "data": {"order_id": f"o-{event_id}", "amount": "1.00", "currency": "CNY"},
    }


# -- sweeps run when woken ---------------------------------------------------------------------
class _FreeLeases:
    async def acquire(self, name: str, ttl_s: float, now: Any = None) -> bool:
        return True

    async def release(self, name: str) -> None:
        return None


async def test_a_woken_sweep_runs_at_once_not_at_its_next_interval() -> None:
    """Notify wakes its delivery sweep after a batch made messages: they go out right after the
    decision instead of up to an interval later."""
    from crm_runtime.sweeps import SweepRunner

    runs: list[str] = []

    async def job(now: Any) -> int:
        runs.append("ran")
        return 0

    runner = SweepRunner("notify", _FreeLeases(), CollectorRegistry())  # type: ignore[arg-type]
    runner.add("deliver", 3600.0, job)
    task = asyncio.create_task(runner.run_forever("deliver"))
    await asyncio.sleep(0.05)
    assert runs == []
    runner.wake("deliver")
    for _ in range(100):
        if runs:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert runs == ["ran"]
