"""`notify.v1`: events published by the notify service."""

from pydantic import BaseModel

EVENTS: dict[str, type[BaseModel]] = {}
