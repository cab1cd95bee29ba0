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
