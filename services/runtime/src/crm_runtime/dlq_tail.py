"""What a service dead-lettered, read back for `GET /dead-letters`: the newest letters of its own
`<service>.dlq.v1`, read on request.

The topic is the record: it holds every replica's letters (and those from before this route
existed) for as long as the topic keeps them (two weeks), and nothing is written on the
dead-letter path to keep a second copy true. Each request reads at most `limit` letters from the
end of each partition with no consumer group (nothing is committed), one request at a time,
within `READ_TIMEOUT_S`.

A letter is shown by its headers only: when, from which topic/partition/offset, the exception
and the reason (redacted again here, as a letter written by another client may not have been),
and the event's `id` and `type` when its value is a JSON object giving them as plain
identifiers. **Never the key or the value**: they may hold personal data.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from crm_runtime import dlq
from crm_runtime.logs import redact

LIST_MAX = 200
READ_TIMEOUT_S = 5.0
VALUE_PARSED_MAX = 64 * 1024
"""A value longer than this is not parsed for its event id and type (they are then unknown)."""
EVENT_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")
"""What an event id or type shown must look like: an identifier, never free text."""


@dataclass(frozen=True)
class LetterSummary:
    """One dead letter, without its key and value."""

    at: datetime | None
    dlq_partition: int
    dlq_offset: int
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    last_offset: int | None
    """A record batch that could not be read: the letter stands for source offsets up to this."""
    event_id: str | None
    event_type: str | None
    exception: str | None
    reason: str
    cut: bool
    """The letter kept only a prefix of the original (or none of it)."""


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _time(text: str | None, timestamp_ms: int | None) -> datetime | None:
    try:
        if text:
            at = datetime.fromisoformat(text)
            return at if at.tzinfo else at.replace(tzinfo=UTC)
    except ValueError:
        pass
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC) if timestamp_ms else None


def event_fields(value: bytes | None) -> dict[str, str]:
    """`id` and `type` of a value that is a JSON object giving them as identifiers."""
    if not value or len(value) > VALUE_PARSED_MAX:
        return {}
    try:
        document: Any = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {
        name: field
        for name in ("id", "type")
        if isinstance(field := document.get(name), str) and EVENT_FIELD.fullmatch(field)
    }


def summary(
    partition: int,
    offset: int,
    headers: Sequence[tuple[str, bytes]] | None,
    value: bytes | None,
    timestamp_ms: int | None = None,
) -> LetterSummary:
    """A letter as `GET /dead-letters` shows it, from the DLQ record's parts."""
    said = {name: (raw or b"").decode(errors="replace") for name, raw in headers or ()}
    event = event_fields(value)
    return LetterSummary(
        at=_time(said.get(dlq.TIME), timestamp_ms),
        dlq_partition=partition,
        dlq_offset=offset,
        source_topic=said.get(dlq.SOURCE_TOPIC) or None,
        source_partition=_int(said.get(dlq.SOURCE_PARTITION)),
        source_offset=_int(said.get(dlq.SOURCE_OFFSET)),
        last_offset=_int(said.get(dlq.LAST_OFFSET)),
        event_id=event.get("id"),
        event_type=event.get("type"),
        exception=said.get(dlq.EXCEPTION) or None,
        reason=redact(said.get(dlq.REASON, ""), dlq.REASON_MAX)[: dlq.REASON_MAX],
        cut=dlq.CUT in said,
    )


def newest(letters: Sequence[LetterSummary], limit: int) -> list[LetterSummary]:
    """The `limit` most recent letters, newest first (by when they were written, then by their
    place in the topic)."""
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(
        letters,
        key=lambda d: (d.at or oldest, d.dlq_partition, d.dlq_offset),
        reverse=True,
    )[:limit]


@dataclass(frozen=True)
class DeadLetterList:
    topic: str
    total: int
    """Letters the topic holds now (all partitions)."""
    letters: list[LetterSummary]


class DeadLetterUnavailableError(Exception):
    """The broker did not answer in time (HTTP 503)."""


Clients = Callable[[], tuple[AIOKafkaAdminClient, AIOKafkaConsumer]]
"""A new admin client and a new group-less consumer, not started."""


class DeadLetterTail:
    def __init__(self, topic: str, clients: Clients, timeout_s: float = READ_TIMEOUT_S) -> None:
        self.topic = topic
        self.clients = clients
        self.timeout_s = timeout_s
        self._one_at_a_time = asyncio.Lock()

    async def newest(self, limit: int) -> DeadLetterList:
        """The `limit` newest letters and how many the topic holds; raises
        `DeadLetterUnavailableError` when the broker does not answer in time."""
        async with self._one_at_a_time:
            try:
                return await asyncio.wait_for(self._read(limit), self.timeout_s)
            except TimeoutError as exc:
                raise DeadLetterUnavailableError(
                    f"the broker did not give {self.topic} within {self.timeout_s:g} s"
                ) from exc

    async def _read(self, limit: int) -> DeadLetterList:
        async with self._started() as (admin, consumer):
            described = await admin.describe_topics([self.topic])
            partitions = [
                TopicPartition(self.topic, p["partition"])
                for t in described
                if t["error_code"] == 0
                for p in t["partitions"]
            ]
            if not partitions:  # not created yet: nothing was dead-lettered
                return DeadLetterList(self.topic, 0, [])
            consumer.assign(partitions)
            begin = await consumer.beginning_offsets(partitions)
            end = await consumer.end_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, max(begin[tp], end[tp] - limit))
            letters: list[LetterSummary] = []
            remaining = {tp for tp in partitions if await consumer.position(tp) < end[tp]}
            while remaining:
                fetched = await consumer.getmany(*remaining, timeout_ms=1000)
                for tp, records in fetched.items():
                    letters += [
                        summary(r.partition, r.offset, r.headers, r.value, r.timestamp)
                        for r in records
                        if r.offset < end[tp]
                    ]
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
            total = sum(end[tp] - begin[tp] for tp in partitions)
            return DeadLetterList(self.topic, total, newest(letters, limit))

    @asynccontextmanager
    async def _started(self) -> AsyncIterator[tuple[AIOKafkaAdminClient, AIOKafkaConsumer]]:
        admin, consumer = self.clients()
        try:
            await admin.start()
            await consumer.start()
            yield admin, consumer
        finally:
            await consumer.stop()
            await admin.close()
