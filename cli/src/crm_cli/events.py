"""Reading events from a JSON-lines file and checking them as the services will.

Each non-blank line must be one CloudEvent (structured JSON). A line is valid when the contracts'
decoder accepts it (envelope, known type, data), when it travels on the topic it is sent to, and,
on the inbound topics written by external systems, when its `time` is not over a day ahead (the
services dead-letter those). The Kafka key is the event's `subject`, the customer id, which the
services require.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from crm_cli.errors import CliError
from crm_contracts import EventDecodeError, decode_event, event_topic
from crm_contracts.envelope import check_not_in_the_future
from crm_contracts.topics import ALL_TOPICS, INBOUND

INBOUND_TOPICS = frozenset(t.name for t in INBOUND)
KNOWN_TOPICS = frozenset(t.name for t in ALL_TOPICS)


@dataclass(frozen=True)
class Line:
    """One line of the file, checked: `reason` is empty when it is valid."""

    number: int
    value: bytes
    topic: str | None
    key: bytes | None
    event_type: str | None = None
    event_id: str | None = None
    reason: str = ""

    @property
    def valid(self) -> bool:
        return not self.reason


def check_line(
    number: int, raw: bytes, *, topic: str | None = None, now: datetime | None = None
) -> Line:
    """Validate one line; `topic` overrides the registry's choice."""
    value = raw.strip()
    try:
        event = decode_event(value)
    except EventDecodeError as exc:
        loose = loose_fields(value)  # parsed again only for an invalid line
        key = loose.get("subject")
        guessed = topic or _topic_of(loose.get("type"))
        return Line(
            number,
            value,
            guessed,
            key.encode() if key is not None else None,
            loose.get("type"),
            loose.get("id"),
            str(exc),
        )
    home = event_topic(event.type)
    target = topic or home
    reason = ""
    if target in KNOWN_TOPICS and target != home:
        reason = f"event type {event.type!r} travels on {home}, not {target}"
    elif target in INBOUND_TOPICS:
        try:
            check_not_in_the_future(event, now or datetime.now(UTC))
        except EventDecodeError as exc:
            reason = str(exc)
    return Line(number, value, target, event.subject.encode(), event.type, event.id, reason)


def loose_fields(value: bytes) -> dict[str, str]:
    """`type`, `id` and `subject` of a value when it is a JSON object with those as strings
    (even an invalid event usually has them)."""
    try:
        document: Any = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {k: v for k in ("type", "id", "subject") if isinstance(v := document.get(k), str)}


def _topic_of(event_type: str | None) -> str | None:
    if event_type is None:
        return None
    try:
        return event_topic(event_type)
    except KeyError:
        return None


def count_lines(path: Path) -> int:
    """How many non-blank lines `path` has (for a progress bar's total), reading in blocks."""
    count = 0
    with open_events(path) as stream:
        for raw in stream:
            if raw.strip():
                count += 1
    return count


def read_lines(path: Path, *, topic: str | None = None) -> Iterator[Line]:
    """Every non-blank line of `path`, checked, in order (the file is streamed)."""
    with open_events(path) as stream:
        for number, raw in enumerate(stream, start=1):
            if raw.strip():
                yield check_line(number, raw, topic=topic)


def check_file(path: Path) -> None:
    """Fail early, before any connection, when `path` cannot be read."""
    open_events(path).close()


def open_events(path: Path) -> BinaryIO:
    """Open `path` for reading bytes; a missing or unreadable file is a `CliError`."""
    if path.is_dir():
        raise CliError(f"{path} is a directory, not a JSON-lines file")
    try:
        return path.open("rb")
    except FileNotFoundError as exc:
        raise CliError(f"no such file: {path}") from exc
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc
