"""Cursor paging for list routes: `?limit=&cursor=` in, `{"items": [...], "next_cursor": ...}` out.

A cursor is an opaque URL-safe token holding the sort key of the last item returned; a tampered
or stale cursor is a 400, never a 500.
"""

import base64
import binascii
import json
from typing import Any, Generic, TypeVar

from fastapi import HTTPException
from pydantic import BaseModel

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(400, "the cursor is not valid; start again without one") from exc
    if not isinstance(position, dict):
        raise HTTPException(400, "the cursor is not valid; start again without one")
    return position


def after_key(cursor: str | None, key: str, kind: type[T]) -> T | None:
    """For lists sorted by `key`: the value to continue after (None: from the start)."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    value = position.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise HTTPException(400, "the cursor is not valid; start again without one")
    return value


def key_cursor(key: str, last: object, returned: int, limit: int) -> str | None:
    """The next cursor of a keyed list: only when the page came back full."""
    return encode_cursor({key: last}) if last is not None and returned == limit else None


def after_id(cursor: str | None) -> str | None:
    """For lists sorted by `_id`."""
    return after_key(cursor, "id", str)


def id_cursor(last_id: str | None, returned: int, limit: int) -> str | None:
    return key_cursor("id", last_id, returned, limit)


def present(**filters: object) -> dict[str, object]:
    """Query filters from optional parameters: the ones given."""
    return {name: value for name, value in filters.items() if value is not None}
