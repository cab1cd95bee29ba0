"""The consumer checks envelopes first and validates data only of the events it will apply
(ADR 0017): a type the service ignores, or an event its inbox has applied, costs no data
validation; every invalid event it would apply is still dead-lettered with its reason."""

import json
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import crm_runtime.consumer as consumer_module
from crm_contracts import CloudEvent, decode_data, event_key
from crm_runtime.consumer import BatchConsumer, Unprocessed
from crm_runtime.dlq import DeadLetters, InboundRecord
from crm_runtime.health import Health
from crm_runtime.metrics import RuntimeMetrics
from crm_runtime.retry import Backoff


def members_event(event_id: str, event_type: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "crm/archive",
            "type": event_type,
            "subject": "c1",
            "time": "2026-01-01T00:00:00Z",
            "data": data,
        }
    ).encode()


def registered(event_id: str, email: str = "li@example.com") -> bytes:
    return members_event(event_id, "customer.registered", {"name": "Li Lei", "email": email})


def consent(event_id: str, channel: Any = "email") -> bytes:
    """A `customer.consent_changed`: the type the test's service ignores."""
    return members_event(event_id, "customer.consent_changed", {"channel": channel})


def record(offset: int, value: bytes) -> InboundRecord:
    return InboundRecord("members.v1", 0, offset, b"c1", value)


class Handler:
    def __init__(self) -> None:
        self.persisted: list[str] = []

    async def __call__(self, events: Sequence[CloudEvent[Any]]) -> int:
        seen = set(self.persisted)
        fresh = [e.id for e in events if e.id not in seen]
        self.persisted.extend(fresh)
        return len(fresh)


class Inbox:
    """The inbox's lookup over the keys of the events applied before."""

    def __init__(self, applied: set[str]) -> None:
        self.applied = applied
        self.lookups = 0

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        self.lookups += 1
        fresh: list[CloudEvent[Any]] = []
        for event in events:
            if event_key(event) not in self.applied:
                self.applied.add(event_key(event))
                fresh.append(event)
        return fresh


def applied_key(event_id: str) -> str:
    return f"{len('crm/archive')}:crm/archive/{event_id}"


def make(
    unprocessed: Unprocessed | None,
) -> tuple[BatchConsumer, Handler, list[dict[str, str]], RuntimeMetrics]:
    sent: list[dict[str, str]] = []

    async def send(topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        sent.append(headers)

    handler = Handler()
    metrics = RuntimeMetrics(CollectorRegistry(), "loyalty")
    consumer = BatchConsumer(
        handler,
        DeadLetters(send, service="loyalty", consumer_group="loyalty"),
        health=Health(),
        metrics=metrics,
        backoff=Backoff(0.001, 0.002),
        accepted_types=["customer.registered", "customer.profile_updated"],
        unprocessed=unprocessed,
    )
    return consumer, handler, sent, metrics


def count_data_validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    validated: list[str] = []

    def counting(envelope: CloudEvent[Any]) -> CloudEvent[Any]:
        validated.append(envelope.id)
        return decode_data(envelope)

    monkeypatch.setattr(consumer_module, "decode_data", counting)
    return validated


async def test_an_ignored_type_is_skipped_without_validating_its_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A type of the topic the service does not apply is skipped on its envelope: its data is
    not validated, so bad data in it is not this service's dead letter (the services that apply
    the type dead-letter it)."""
    validated = count_data_validations(monkeypatch)
    consumer, handler, sent, metrics = make(None)
    await consumer.process([record(0, consent("k1", channel=["not", "a", "channel"]))])
    assert validated == []
    assert sent == []
    assert handler.persisted == []
    ignored = metrics.ignored.labels("loyalty", "members.v1", "customer.consent_changed")
    assert ignored._value.get() == 1


async def test_an_event_the_inbox_has_applied_is_a_duplicate_before_its_data_is_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The archive's echo of its own `customer.registered` (ADR 0011): found in the inbox on its
    envelope, counted as a duplicate, the handler not called and the e-mail not validated."""
    validated = count_data_validations(monkeypatch)
    inbox = Inbox({applied_key("e1"), applied_key("e2")})
    consumer, handler, sent, metrics = make(inbox.unprocessed)
    await consumer.process([record(0, registered("e1")), record(1, registered("e2"))])
    assert validated == []
    assert handler.persisted == []
    assert sent == []
    assert metrics.duplicates.labels("loyalty")._value.get() == 2
    assert inbox.lookups == 1  # one lookup for the batch


async def test_a_redelivery_of_an_applied_event_with_other_data_changes_nothing() -> None:
    """Same `source` and `id` as an applied event, data now invalid: the inbox says it was
    applied, so it is skipped like any redelivery, not dead-lettered (ADR 0017)."""
    inbox = Inbox({applied_key("e1")})
    consumer, handler, sent, metrics = make(inbox.unprocessed)
    await consumer.process([record(0, registered("e1", email="no-at"))])
    assert sent == []
    assert handler.persisted == []
    assert metrics.duplicates.labels("loyalty")._value.get() == 1


async def test_every_invalid_new_event_is_still_dead_lettered_with_its_reason() -> None:
    inbox = Inbox({applied_key("old")})
    consumer, handler, sent, _ = make(inbox.unprocessed)
    await consumer.process(
        [record(0, registered("bad", email="no-at")), record(1, registered("good"))]
    )
    assert [h["x-dlq-source-offset"] for h in sent] == ["0"]
    assert "data.email" in sent[0]["x-dlq-reason"]
    assert handler.persisted == ["good"]


async def test_an_invalid_first_copy_does_not_hide_a_valid_second_copy_in_the_batch() -> None:
    """Two copies of one new event in a batch, the first with bad data: the first is
    dead-lettered and the second applied (the inbox lookup drops only what was applied before)."""
    inbox = Inbox(set())
    consumer, handler, sent, _ = make(inbox.unprocessed)
    await consumer.process(
        [record(0, registered("e1", email="no-at")), record(1, registered("e1"))]
    )
    assert [h["x-dlq-source-offset"] for h in sent] == ["0"]
    assert handler.persisted == ["e1"]
