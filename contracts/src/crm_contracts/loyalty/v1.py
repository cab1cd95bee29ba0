"""`loyalty.v1`: events published by the loyalty service."""

from pydantic import BaseModel

EVENTS: dict[str, type[BaseModel]] = {}
