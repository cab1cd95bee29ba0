"""`crm dlq list` and `crm dlq redrive`: read a service's dead letters, send them back.

A dead letter (crm_runtime.dlq) keeps the failed message's key and value byte for byte and says
why and from where in `x-dlq-*` headers.

Redrive keeps its progress in the consumer group `crm-dlq-redrive-<service>` on the DLQ topic, so
a dead letter is re-driven once: the group's committed offset on a partition is the first letter
not yet re-driven, committed after each re-driven message is acknowledged. When filters leave a
letter behind, the offset stays on it (a later redrive with other filters still finds it) and the
letters re-driven past it are listed in the commit's metadata (`crm-redrive:<offsets>`), so they
are not sent again.
"""

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from crm_cli.connection import (
    admin_client,
    consumer_client,
    partitions_of,
    producer_client,
    retry_coordinator,
)
from crm_cli.errors import EXIT_BROKER, CliError
from crm_cli.events import loose_fields
from crm_contracts.topics import dlq_topic_name
from crm_runtime import dlq

REDRIVEN_FROM = "x-redriven-from"
"""Header of a re-driven message: the dead letter's offset in the DLQ topic."""
METADATA_PREFIX = "crm-redrive:"
METADATA_MAX = 3000
"""Kafka refuses commit metadata over `offset.metadata.max.bytes` (4096 by default)."""


def redrive_group(service: str) -> str:
    return f"crm-dlq-redrive-{service}"


@dataclass(frozen=True)
class DeadLetter:
    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return self.headers.get(dlq.REASON, "")

    @property
    def time(self) -> str:
        return self.headers.get(dlq.TIME, "")

    @property
    def source_topic(self) -> str | None:
        return self.headers.get(dlq.SOURCE_TOPIC) or None

    @property
    def source_partition(self) -> int | None:
        try:
            return int(self.headers[dlq.SOURCE_PARTITION])
        except (KeyError, ValueError):
            return None

    @property
    def source_offset(self) -> int | None:
        try:
            return int(self.headers[dlq.SOURCE_OFFSET])
        except (KeyError, ValueError):
            return None

    def event_fields(self) -> dict[str, str]:
        """`type` and `id` (and `subject`) of the value, when it has them."""
        return loose_fields(self.value or b"")

    def as_json(self) -> dict[str, Any]:
        event = self.event_fields()
        return {
            "dlq_topic": self.dlq_topic,
            "dlq_partition": self.dlq_partition,
            "dlq_offset": self.dlq_offset,
            "time": self.time or None,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "consumer_group": self.headers.get(dlq.CONSUMER_GROUP) or None,
            "service": self.headers.get(dlq.SERVICE) or None,
            "exception": self.headers.get(dlq.EXCEPTION) or None,
            "event_type": event.get("type"),
            "event_id": event.get("id"),
            "key": self.key.decode(errors="replace") if self.key is not None else None,
            "reason": self.reason,
            "cut": self.headers.get(dlq.CUT) or None,
            "value_sha256": self.headers.get(dlq.VALUE_SHA256) or None,
            "last_offset": self.headers.get(dlq.LAST_OFFSET) or None,
        }

    def line(self) -> str:
        """time  source topic/partition@offset  type id  reason"""
        source = (
            f"{self.source_topic}/{self.source_partition}@{self.source_offset}"
            if self.source_topic
            else "(no source)"
        )
        event = self.event_fields()
        what = f"{event.get('type', '?')} {event.get('id', '?')}"
        reason = " ".join(self.reason.split())
        return f"{self.time or '-'}  {source}  {what}  {reason}"


def from_record(record: Any) -> DeadLetter:
    headers = {
        name: (value or b"").decode(errors="replace") for name, value in record.headers or ()
    }
    return DeadLetter(
        record.topic, record.partition, record.offset, record.key, record.value, headers
    )


# -- list ------------------------------------------------------------------------------------
async def list_dead_letters(
    options: dict[str, Any], service: str, *, limit: int | None = None
) -> list[DeadLetter]:
    """Every dead letter of `service` (or the `limit` most recent), oldest first. Reads with no
    consumer group: nothing is committed."""
    topic = dlq_topic_name(service)
    async with admin_client(options) as admin:
        partitions = await partitions_of(admin, topic)
    letters: list[DeadLetter] = []
    async with consumer_client(options) as consumer:
        consumer.assign(partitions)
        begin = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        for tp in partitions:
            start = begin[tp] if limit is None else max(begin[tp], end[tp] - limit)
            consumer.seek(tp, start)
        await _read_until(consumer, end, lambda record: letters.append(from_record(record)))
    letters.sort(key=lambda d: (d.time, d.dlq_partition, d.dlq_offset))
    return letters[-limit:] if limit is not None and limit > 0 else letters


async def _read_until(
    consumer: AIOKafkaConsumer,
    end: dict[TopicPartition, int],
    handle: Callable[[Any], None],
) -> None:
    """Read every partition up to its `end` offset (taken when the command started)."""
    remaining = {tp for tp, offset in end.items() if await consumer.position(tp) < offset}
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=1000)
        for tp, records in batches.items():
            for record in records:
                if record.offset < end[tp]:
                    handle(record)
        for tp in list(remaining):
            if await consumer.position(tp) >= end[tp]:
                remaining.discard(tp)


# -- redrive ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    reason_contains: str | None = None
    source_topic: str | None = None

    def match(self, letter: DeadLetter) -> bool:
        if self.reason_contains and self.reason_contains.lower() not in letter.reason.lower():
            return False
        return not (self.source_topic and letter.source_topic != self.source_topic)


@dataclass
class Progress:
    """A partition's redrive progress: `offset`, the first letter not yet re-driven, and the
    letters beyond it that were."""

    offset: int
    done: set[int] = field(default_factory=set)

    def metadata(self) -> str:
        return METADATA_PREFIX + compress(sorted(o for o in self.done if o >= self.offset))


def compress(offsets: Iterable[int]) -> str:
    """`[3, 4, 5, 9]` -> `3-5,9`."""
    parts: list[str] = []
    run: list[int] = []
    for offset in offsets:
        if run and offset == run[-1] + 1:
            run.append(offset)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [offset]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def parse_metadata(metadata: str | None) -> set[int]:
    """The offsets a commit's metadata lists; anything not ours is ignored."""
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return set()
    offsets: set[int] = set()
    try:
        for part in filter(None, metadata[len(METADATA_PREFIX) :].split(",")):
            low, _, high = part.partition("-")
            offsets.update(range(int(low), int(high or low) + 1))
    except ValueError:
        return set()
    return offsets


@dataclass
class RedriveReport:
    redriven: list[DeadLetter] = field(default_factory=list)
    already: int = 0
    """Letters re-driven by an earlier run."""
    filtered: int = 0
    """Letters the filters left behind (they stay to be re-driven later)."""
    unsendable: list[tuple[DeadLetter, str]] = field(default_factory=list)
    """Letters with no source to send them back to (passed over), or whose send failed."""


async def redrive(
    options: dict[str, Any],
    service: str,
    *,
    filters: Filters,
    dry_run: bool = False,
    on_letter: Callable[[DeadLetter], None] = lambda letter: None,
) -> RedriveReport:
    topic = dlq_topic_name(service)
    group = redrive_group(service)
    report = RedriveReport()
    async with admin_client(options) as admin:
        partitions = await partitions_of(admin, topic)
        committed = await retry_coordinator(
            lambda: admin.list_consumer_group_offsets(group, partitions=partitions)
        )
        existing = set(await admin.list_topics())
    async with consumer_client(options, group_id=group) as consumer:
        consumer.assign(partitions)
        begin = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        progress: dict[TopicPartition, Progress] = {}
        for tp in partitions:
            mark = committed.get(tp)
            offset = mark.offset if mark is not None and mark.offset >= 0 else begin[tp]
            offset = max(offset, begin[tp])
            progress[tp] = Progress(offset, parse_metadata(mark.metadata if mark else None))
            consumer.seek(tp, offset)
        records: list[Any] = []
        await _read_until(consumer, end, records.append)
        async with producer_client(options) as producer:
            blocked: dict[TopicPartition, int] = {}
            for record in records:
                tp = TopicPartition(record.topic, record.partition)
                state = progress[tp]
                letter = from_record(record)
                if letter.dlq_offset in state.done:
                    report.already += 1
                    continue
                if not filters.match(letter):
                    report.filtered += 1
                    blocked.setdefault(tp, letter.dlq_offset)
                    continue
                problem = _unsendable(letter, existing)
                if problem:
                    report.unsendable.append((letter, problem))
                    if letter.source_topic and letter.source_topic not in existing:
                        # the topic may exist later: keep the letter for a later redrive
                        blocked.setdefault(tp, letter.dlq_offset)
                    continue
                if dry_run:
                    report.redriven.append(letter)
                    on_letter(letter)
                    continue
                state.done.add(letter.dlq_offset)
                mark_offset = blocked.get(tp, letter.dlq_offset + 1)
                metadata = Progress(mark_offset, state.done).metadata()
                if len(metadata) > METADATA_MAX:
                    state.done.discard(letter.dlq_offset)
                    raise CliError(
                        f"too many letters re-driven past one the filters leave behind on "
                        f"{topic}/{tp.partition} (offset {blocked.get(tp)}); redrive with "
                        "broader filters first",
                        EXIT_BROKER,
                    )
                source = letter.source_topic or ""
                try:
                    await producer.send_and_wait(
                        source,
                        letter.value,
                        key=letter.key,
                        partition=_partition(letter, await producer.partitions_for(source)),
                        headers=[
                            (REDRIVEN_FROM, str(letter.dlq_offset).encode()),
                            ("x-redriven-from-topic", topic.encode()),
                            ("x-redriven-from-partition", str(tp.partition).encode()),
                        ],
                    )
                except KafkaError as exc:
                    state.done.discard(letter.dlq_offset)
                    raise CliError(
                        f"sending {topic}/{tp.partition}@{letter.dlq_offset} back to "
                        f"{letter.source_topic} failed: {exc}",
                        EXIT_BROKER,
                    ) from exc
                state.offset = mark_offset
                await consumer.commit({tp: (state.offset, metadata)})
                report.redriven.append(letter)
                on_letter(letter)
            if not dry_run:
                await _commit_passed(consumer, progress, blocked, end)
    return report


async def _commit_passed(
    consumer: AIOKafkaConsumer,
    progress: dict[TopicPartition, Progress],
    blocked: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
) -> None:
    """Move each partition's mark past what this run read and need not read again (letters
    re-driven earlier, letters without a source)."""
    for tp, state in progress.items():
        target = blocked.get(tp, end[tp])
        if target != state.offset:
            state.offset = target
            await consumer.commit({tp: (state.offset, state.metadata())})


def _unsendable(letter: DeadLetter, existing: set[str]) -> str:
    if not letter.source_topic:
        return "no x-dlq-source-topic header: nowhere to send it (passed over)"
    if letter.value is None:
        return "no value (a tombstone): nothing to send (passed over)"
    if dlq.LAST_OFFSET in letter.headers:
        return (
            f"an unreadable record batch (offsets {letter.source_offset}.."
            f"{letter.headers[dlq.LAST_OFFSET]}): read them from the source topic (passed over)"
        )
    if dlq.CUT in letter.headers:
        return "cut to fit a dead letter: the whole value is only in the source topic (passed over)"
    if letter.source_topic not in existing:
        return f"source topic {letter.source_topic} does not exist on the broker"
    return ""


def _partition(letter: DeadLetter, partitions: set[int] | None) -> int | None:
    """The partition the message was read from, when the topic still has it (the original
    producer's partitioner may differ from ours); else the key decides."""
    original = letter.source_partition
    if original is not None and partitions and original in partitions:
        return original
    return None


def letters_json(letters: Iterable[DeadLetter]) -> str:
    return "\n".join(json.dumps(letter.as_json(), ensure_ascii=False) for letter in letters)
