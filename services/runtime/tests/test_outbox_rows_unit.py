"""One outbox row holds one transaction's events (ADR 0019): in order, at most `GROUP_EVENTS`
events and `GROUP_BYTES` of encoded events a row, so a large transaction writes a few rows and a
huge event cannot make a row the store refuses."""

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from crm_contracts import CloudEvent
from crm_runtime.outbox import GROUP_BYTES, GROUP_EVENTS, OutboundMessage, Outbox, row_events

pytestmark = pytest.mark.unit


class Collection:
    def __init__(self) -> None:
        self.inserts: list[list[dict[str, Any]]] = []

    async def insert_many(self, documents: list[dict[str, Any]], session: Any = None) -> None:
        self.inserts.append(documents)


def outbox() -> tuple[Outbox, Collection]:
    collection = Collection()
    return Outbox(cast(Any, {"outbox": collection})), collection


def message(n: int, padding: int = 0) -> OutboundMessage:
    return OutboundMessage(
        "test.v1",
        CloudEvent[dict[str, Any]](
            id=f"e{n}",
            source="tests",
            type="test.happened",
            subject=f"c{n % 3}",
            time=datetime(2026, 12, 4, tzinfo=UTC),
            data={"n": n, "padding": "x" * padding},
        ),
    )


async def test_a_transactions_events_are_rows_of_at_most_group_events_in_order() -> None:
    box, collection = outbox()
    messages = [message(n) for n in range(2 * GROUP_EVENTS + 7)]
    await box.add(messages, session=cast(Any, None))
    [rows] = collection.inserts  # one insert for the transaction
    assert [row["count"] for row in rows] == [GROUP_EVENTS, GROUP_EVENTS, 7]
    assert [row["seq"] for row in rows] == [0, 1, 2]
    assert {row["created_at"] for row in rows} == {rows[0]["created_at"]}
    assert all(row["sent"] is False for row in rows)
    assert [event["_id"] for row in rows for event in row_events(row)] == [
        f"e{n}" for n in range(len(messages))
    ]
    first = rows[0]["events"][0]
    assert (first["topic"], first["key"], first["type"]) == ("test.v1", "c0", "test.happened")


async def test_events_past_group_bytes_start_a_new_row() -> None:
    box, collection = outbox()
    big = GROUP_BYTES // 2 + 1  # two do not fit in one row
    await box.add([message(n, padding=big) for n in range(3)], session=cast(Any, None))
    [rows] = collection.inserts
    assert [row["count"] for row in rows] == [1, 1, 1]
    assert all(sum(len(e["value"]) for e in row["events"]) <= GROUP_BYTES + 1024 for row in rows)


async def test_nothing_to_add_writes_nothing() -> None:
    box, collection = outbox()
    await box.add([], session=cast(Any, None))
    assert collection.inserts == []


def test_a_row_written_per_event_by_an_earlier_version_is_its_own_event() -> None:
    legacy = {"_id": "e1", "topic": "t", "key": "c", "type": "x", "value": b"{}"}
    assert row_events(legacy) == [legacy]
