"""The message contracts: what integrators may send and what we reject, with readable reasons."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from crm_contracts import (
    EventDecodeError,
    UnknownEventTypeError,
    decode_event,
    encode_event,
    new_event,
)
from crm_contracts.orders.v1 import OrderPlaced
from crm_contracts.registry import EVENT_MODELS, event_topic
from crm_contracts.schemas import render, schema_documents
from crm_contracts.topics import ALL_TOPICS, DEFAULT_PARTITIONS, INBOUND, dlq_topic_name, topic

pytestmark = pytest.mark.unit
SCHEMAS = Path(__file__).parents[1] / "schemas"


def order_json(**data: object) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": "e-1",
            "source": "orders",
            "type": "order.placed",
            "subject": "c1",
            "time": "2026-11-01T10:00:00+08:00",
            "data": {"order_id": "o1", "amount": "129.90", "currency": "CNY", **data},
        }
    ).encode()


def test_committed_schemas_match_the_models() -> None:
    """Fails when a contract model changed and `make schemas` was not run (review sees diffs)."""
    expected = schema_documents()
    committed = {str(p.relative_to(SCHEMAS)): p.read_text() for p in SCHEMAS.rglob("*.json")}
    assert sorted(committed) == sorted(expected), "run `make schemas`: event types changed"
    for name, schema in expected.items():
        assert committed[name] == render(schema), f"run `make schemas`: {name} is stale"


def test_an_event_survives_encoding_and_decoding() -> None:
    event = new_event(
        "order.placed",
        source="test",
        subject="c1",
        data=OrderPlaced(order_id="o1", amount=Decimal("129.90"), currency="CNY"),
        time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    decoded = decode_event(encode_event(event))
    assert decoded == event
    assert isinstance(decoded.data, OrderPlaced)
    assert decoded.data.amount == Decimal("129.90")
    assert json.loads(encode_event(event))["data"]["amount"] == "129.90"


def _optional_fields_without_default(model: type[BaseModel], path: str) -> list[str]:
    found = []
    for name, info in model.model_fields.items():
        nullable = type(None) in get_args(info.annotation) or info.annotation is type(None)
        if nullable and info.is_required():
            found.append(f"{path}.{name}")
        for arg in (info.annotation, *get_args(info.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                found += _optional_fields_without_default(arg, f"{path}.{name}")
    return found


def test_a_field_that_may_be_null_may_be_missing() -> None:
    """Events go on the wire without their null fields (`encode_event` drops them): a field
    that may be null and has no default would make the producer's own event invalid to every
    consumer (relations' queue tasks, owner null, were dead-lettered by the archive)."""
    found = [
        field
        for event_type, model in EVENT_MODELS.items()
        for field in _optional_fields_without_default(model, event_type)
    ]
    assert found == []


def test_money_must_be_a_decimal_string() -> None:
    with pytest.raises(EventDecodeError, match="decimal string"):
        decode_event(order_json(amount=129.9))
    with pytest.raises(EventDecodeError, match=r"data\.amount"):
        decode_event(order_json(amount="-1.00"))
    with pytest.raises(EventDecodeError, match=r"data\.amount"):
        decode_event(order_json(amount="1e9"))
    assert decode_event(order_json(amount="0")).data.amount == Decimal(0)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": 5}', "'type'"),
        (b"\xff\xfe", "not JSON"),
        (order_json(currency="cny"), "data.currency"),
        (order_json().replace(b'"subject": "c1", ', b""), "subject"),
        (order_json().replace(b"+08:00", b""), "time"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError, match=reason):
        decode_event(raw)


def test_rejection_reasons_do_not_echo_the_input() -> None:
    """Reasons go into DLQ headers and logs: they must not copy PII out of the payload."""
    raw = json.dumps(
        {
            "specversion": "1.0",
            "id": "e",
            "source": "s",
            "type": "customer.registered",
            "subject": "c1",
            "time": "2026-01-01T00:00:00Z",
            "data": {
                "name": "张三",
                "email": "zhangsan@@example..com",
                "phone": "138-0013-8000-99999",
            },
        }
    ).encode()
    with pytest.raises(EventDecodeError) as caught:
        decode_event(raw)
    assert "zhangsan" not in str(caught.value)
    assert "张三" not in str(caught.value)
    assert "0013" not in str(caught.value)


def test_unknown_types_are_their_own_error() -> None:
    with pytest.raises(UnknownEventTypeError):
        decode_event(order_json().replace(b"order.placed", b"order.teleported"))


def test_oversized_events_are_rejected_before_parsing() -> None:
    with pytest.raises(EventDecodeError, match="larger than"):
        decode_event(b" " * 1_000_001)


def test_unknown_fields_are_tolerated() -> None:
    """A tolerant reader: integrators may add fields before we do."""
    assert decode_event(order_json(gift_wrap=True)).data.order_id == "o1"


def test_every_event_type_travels_on_exactly_one_topic() -> None:
    for event_type in EVENT_MODELS:
        carriers = [t.name for t in ALL_TOPICS if event_type in t.event_types]
        assert carriers == [event_topic(event_type)]


def test_topic_registry() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert {t.name for t in INBOUND} == {"orders.v1", "members.v1", "callcenter.v1"}
    assert all(t.partitions == DEFAULT_PARTITIONS for t in INBOUND)
    assert topic(dlq_topic_name("archive")).name == "archive.dlq.v1"
    with pytest.raises(KeyError):
        topic("nope.v1")
