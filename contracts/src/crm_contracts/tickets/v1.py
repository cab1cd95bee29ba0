"""`tickets.v1`: events published by the tickets service."""

from pydantic import BaseModel

EVENTS: dict[str, type[BaseModel]] = {}
