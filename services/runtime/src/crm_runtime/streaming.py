"""Streamed JSON answers: a document whose long arrays are sent page by page, never held whole.

`streamed_json({"customer": {...}}, {"timeline": entries})` answers a JSON object with chunked
transfer encoding: the fields first, then each array item by item as its async iterable yields
them (a database cursor), `page` items to a chunk. At most one page is in memory at a time, so the
size of the answer does not bound the memory of the service. A failure after the first chunk can
no longer change the status: check what can fail (not found, not allowed) before calling this.
"""

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic_core import to_json

PAGE = 500


def _encode(value: Any) -> bytes:
    """As pydantic's JSON mode: datetimes in ISO 8601, decimals as strings, models as objects."""
    return to_json(value)


async def json_object_chunks(
    fields: Mapping[str, Any],
    arrays: Mapping[str, AsyncIterable[Any]],
    *,
    page: int = PAGE,
) -> AsyncIterator[bytes]:
    """The bytes of `{**fields, **{name: [items...]}}`: the fields and the first page of items in
    the first chunk, then one chunk per page (`_encode`: datetimes, decimals, models)."""
    if page < 1:
        raise ValueError("a page holds at least one item")
    members = [_encode(str(name)) + b":" + _encode(value) for name, value in fields.items()]
    head = b"{" + b",".join(members)
    separator = b"," if members else b""
    for name, items in arrays.items():
        head += separator + _encode(str(name)) + b":["
        separator = b","
        buffer: list[bytes] = []
        sent = 0
        async for item in items:
            buffer.append(_encode(item))
            if len(buffer) >= page:
                yield head + (b"," if sent else b"") + b",".join(buffer)
                head, sent, buffer = b"", sent + len(buffer), []
        yield head + (b"," if sent and buffer else b"") + b",".join(buffer) + b"]"
        head = b""
    yield head + b"}"


def streamed_json(
    fields: Mapping[str, Any],
    arrays: Mapping[str, AsyncIterable[Any]],
    *,
    page: int = PAGE,
    headers: Mapping[str, str] | None = None,
) -> StreamingResponse:
    """A 200 whose JSON body is `json_object_chunks(fields, arrays)`, sent chunked."""
    return StreamingResponse(
        json_object_chunks(fields, arrays, page=page),
        media_type="application/json",
        headers=dict(headers or {}),
    )
