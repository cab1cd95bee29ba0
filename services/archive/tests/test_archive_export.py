"""The export is streamed (`crm_runtime.streaming`): a JSON object whose arrays are sent a page at
a time from async iterators (database cursors), so its size never bounds the memory it takes."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from crm_runtime.streaming import json_object_chunks, streamed_json

pytestmark = pytest.mark.unit


async def items(n: int, pulled: list[int]) -> AsyncIterator[dict[str, Any]]:
    for i in range(n):
        pulled.append(i)
        yield {"n": i, "at": datetime(2026, 1, 1, tzinfo=UTC), "amount": Decimal("1.50")}


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


@pytest.mark.parametrize("n", [0, 1, 3, 4, 7])
async def test_the_chunks_make_one_json_object_with_every_item(n: int) -> None:
    pulled: list[int] = []
    head = {"customer": {"id": "c1", "名": "王"}}
    chunks = await collect(
        json_object_chunks(head, {"orders": items(n, pulled), "timeline": items(2, [])}, page=3)
    )
    body = json.loads(b"".join(chunks))
    assert body["customer"] == head["customer"]
    assert [o["n"] for o in body["orders"]] == list(range(n))
    assert body["orders"][:1] in ([], [{"n": 0, "at": "2026-01-01T00:00:00Z", "amount": "1.50"}])
    assert len(body["timeline"]) == 2


async def test_items_are_pulled_a_page_at_a_time() -> None:
    """The generator holds one page: when a chunk is sent, at most a page more has been read."""
    pulled: list[int] = []
    chunks = json_object_chunks({}, {"timeline": items(10_000, pulled)}, page=500)
    first = await anext(chunks)
    assert len(pulled) == 500
    assert first.startswith(b'{"timeline":[{"n":0')
    second = await anext(chunks)
    assert len(pulled) == 1000
    rest = await collect(chunks)
    assert len(rest) == 18 + 2  # the other pages, then the closing bracket and brace
    assert len(json.loads(first + second + b"".join(rest))["timeline"]) == 10_000


def test_the_answer_is_json_sent_without_a_length() -> None:
    response = streamed_json({"a": 1}, {})
    assert response.media_type == "application/json"
    assert "content-length" not in response.headers
