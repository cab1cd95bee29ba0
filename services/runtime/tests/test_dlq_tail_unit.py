"""`GET /dead-letters` (crm_runtime.dlq_tail): a letter is shown by its headers — when, from which
topic/partition/offset, the exception, the reason, and the event's id and type when the value
gives them as identifiers — never by its key or value; the newest first, at most `limit`; a
broker that does not answer is a 503 with a message, not a hung request or a 500. The real
topic: tests/integration/test_archive_slice.py."""

import asyncio
import base64
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from crm_runtime import dlq
from crm_runtime.dlq import DeadLetters, InboundRecord
from crm_runtime.dlq_tail import DeadLetterList, DeadLetterTail, newest, summary
from crm_runtime.http import create_http_app
from crm_runtime.runtime import Runtime
from crm_runtime.settings import ServiceSettings

pytestmark = pytest.mark.unit
PHONE, NAME, EMAIL = "13800138000", "张三丰", "zhang@example.com"


def letter_headers(record: InboundRecord, reason: str) -> list[tuple[str, bytes]]:
    """The headers the runtime writes for `record`, as Kafka hands them back."""
    letters = DeadLetters(_never_sent, service="archive", consumer_group="archive")
    letter = letters.letter(record, reason, ValueError("x"))
    return [(name, value.encode()) for name, value in letter.headers.items()]


async def _never_sent(*args: Any) -> None:
    raise AssertionError("nothing is sent here")


def test_a_letter_is_shown_by_its_headers_and_the_events_id_and_type_never_its_payload() -> None:
    value = json.dumps(
        {
            "id": "e-42",
            "type": "order.placed",
            "subject": "c-9",
            "data": {"name": NAME, "phone": PHONE, "email": EMAIL},
        }
    ).encode()
    record = InboundRecord("orders.v1", 3, 1207, b"c-9", value)
    shown = summary(1, 55, letter_headers(record, f"invalid event: call {PHONE} or {EMAIL}"), value)
    assert (shown.source_topic, shown.source_partition, shown.source_offset) == (
        "orders.v1",
        3,
        1207,
    )
    assert (shown.dlq_partition, shown.dlq_offset) == (1, 55)
    assert (shown.event_id, shown.event_type) == ("e-42", "order.placed")
    assert shown.exception == "ValueError"
    assert shown.reason == "invalid event: call [phone] or [email]"
    assert shown.at is not None
    assert shown.at.tzinfo is not None
    assert not shown.cut
    everything = repr(shown)
    for secret in (PHONE, NAME, EMAIL, "c-9"):
        assert secret not in everything


def test_event_fields_are_shown_only_when_they_are_identifiers() -> None:
    record = InboundRecord("orders.v1", 0, 1, None, b"")
    headers = letter_headers(record, "bad")
    free_text = json.dumps({"id": f"call {NAME} on {PHONE}", "type": "order.placed"}).encode()
    assert summary(0, 0, headers, free_text).event_id is None
    assert summary(0, 0, headers, b"\x00not json").event_type is None
    assert summary(0, 0, headers, b'["id", "type"]').event_id is None
    assert summary(0, 0, headers, None).event_id is None


def test_a_letter_without_headers_still_lists_with_the_records_time() -> None:
    at = datetime(2026, 12, 1, 8, tzinfo=UTC)
    shown = summary(2, 9, None, b"{}", int(at.timestamp() * 1000))
    assert shown.at == at
    assert shown.reason == ""
    assert shown.source_topic is None


def test_the_newest_come_first_and_at_most_limit() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    headers = letter_headers(InboundRecord("orders.v1", 0, 1, None, b""), "r")
    letters = [
        summary(p, o, [(n, v) for n, v in headers if n != dlq.TIME], None, ms)
        for p, o, ms in [
            (0, 5, int((t0 + timedelta(minutes=3)).timestamp() * 1000)),
            (1, 2, int((t0 + timedelta(minutes=9)).timestamp() * 1000)),
            (2, 7, int((t0 + timedelta(minutes=1)).timestamp() * 1000)),
        ]
    ]
    assert [(d.dlq_partition, d.dlq_offset) for d in newest(letters, 2)] == [(1, 2), (0, 5)]


class Settings(ServiceSettings):
    service: ClassVar[str] = "notify"


def runtime_with(tokens: dict[str, Any]) -> Runtime:
    key = base64.b64encode(os.urandom(32)).decode()
    return Runtime(
        Settings(master_keys={"k1": key}, master_key_id="k1", index_key=key, api_tokens=tokens)
    )


class Letters:
    """The tail stand-in: what the topic would give."""

    def __init__(self, found: DeadLetterList) -> None:
        self.found = found
        self.limits: list[int] = []

    async def newest(self, limit: int) -> DeadLetterList:
        self.limits.append(limit)
        return self.found


TOKENS = {
    "sup": {"user": "sup-1", "roles": ["supervisor"]},
    "ops": {"user": "ops-1", "roles": ["ops"]},
    "agent": {"user": "agent-1", "roles": ["agent"]},
}


def test_the_route_lists_the_letters_for_supervisor_and_ops_and_refuses_an_agent() -> None:
    runtime = runtime_with(TOKENS)
    record = InboundRecord("callcenter.v1", 0, 8, None, b"")
    shown = summary(0, 3, letter_headers(record, "invalid event"), b'{"id": "e-1"}')
    tail = Letters(DeadLetterList("notify.dlq.v1", 7, [shown]))
    runtime.dead_letter_tail = tail  # type: ignore[assignment]
    client = TestClient(create_http_app(runtime, title="t", description="t"))
    for token in ("sup", "ops"):
        answer = client.get("/dead-letters", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["service"], body["topic"], body["total"]) == ("notify", "notify.dlq.v1", 7)
        assert body["items"][0]["event_id"] == "e-1"
        assert body["items"][0]["source_topic"] == "callcenter.v1"
        assert body["items"][0]["reason"] == "invalid event"
        assert "key" not in body["items"][0]
        assert "value" not in body["items"][0]
    assert tail.limits == [50, 50]
    agent = client.get("/dead-letters", headers={"Authorization": "Bearer agent"})
    assert agent.status_code == 403
    too_many = client.get("/dead-letters?limit=5000", headers={"Authorization": "Bearer ops"})
    assert too_many.status_code == 422


class Hanging:
    """A Kafka client whose broker never answers."""

    async def start(self) -> None:
        await asyncio.Event().wait()

    async def stop(self) -> None:
        return None

    async def close(self) -> None:
        return None


def test_a_broker_that_does_not_answer_is_a_503_with_a_message() -> None:
    runtime = runtime_with(TOKENS)
    runtime.dead_letter_tail = DeadLetterTail(
        "notify.dlq.v1",
        lambda: (Hanging(), Hanging()),
        timeout_s=0.05,
    )
    client = TestClient(create_http_app(runtime, title="t", description="t"))
    answer = client.get("/dead-letters", headers={"Authorization": "Bearer ops"})
    assert answer.status_code == 503
    assert answer.json()["message"] == "the broker did not give notify.dlq.v1 within 0.05 s"
    assert answer.headers["Retry-After"] == "5"
