"""Batch consumption: decode, dead-letter what is bad, apply the rest, retry what is transient.

The service supplies one `BatchHandler`: given the valid, not-yet-applied events of a batch it
persists their effects (and their outbound events) in one write, or raises. This class never
commits offsets itself: the caller commits after `process` returns, which happens only once every
record of the batch is either persisted or dead-lettered.

Decoding is in two steps (ADR 0017): every record's envelope is checked first (JSON, the
CloudEvents attributes, a known type on its topic, the key); a type the service ignores is then
skipped and an event its inbox has already applied is counted as a duplicate, both without
validating their data; the data is validated only of the events left, the ones to apply.
"""

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from crm_contracts import (
    CloudEvent,
    EventDecodeError,
    UnknownEventTypeError,
    decode_data,
    decode_envelope,
    event_key,
    event_topic,
)
from crm_contracts.envelope import check_not_in_the_future
from crm_contracts.topics import INBOUND
from crm_runtime.crypto import MasterKeyMissingError
from crm_runtime.dlq import DeadLetters, InboundRecord
from crm_runtime.health import Health
from crm_runtime.metrics import RuntimeMetrics
from crm_runtime.retry import Backoff, retrying

MASTER_KEY_CHECK = "master_key"
"""The readiness check a missing master key fails, its reason naming the key id."""
EXTERNAL_TOPICS = frozenset(topic.name for topic in INBOUND)
"""Written by systems outside the suite: their events' times are checked against our clock."""

log = logging.getLogger(__name__)
T = TypeVar("T")


class SkippedEventError(Exception):
    """A valid event of a consumed topic whose type this service has no use for: skipped."""


def decode_record(
    record: InboundRecord, accepted_types: Collection[str] | None, now: datetime
) -> CloudEvent[Any]:
    """The one check of an inbound record, for the live consumer and for a rebuild alike: a
    CloudEvent the contracts accept, of a type this service takes on this topic, keyed by its
    subject, and (from outside systems) not dated in the future. `check_envelope`, then the
    data validated.

    Raises `EventDecodeError` (dead-letter it) or `SkippedEventError` (ignore it)."""
    return decode_data(check_envelope(record, accepted_types, now))


def check_envelope(
    record: InboundRecord, accepted_types: Collection[str] | None, now: datetime
) -> CloudEvent[Any]:
    """`decode_record` without the data: the envelope of a CloudEvent of a known type, of a type
    this service takes on this topic, keyed by its subject, and (from outside systems) not dated
    in the future. Its `data` is unchecked JSON until `decode_data`.

    "The future" is measured from the record's broker timestamp when that is earlier than `now`
    (a rebuild long after the event reaches the verdict the live consumer reached). A valid
    envelope of a type of this topic that the service ignores is skipped whatever its data.
    Raises `EventDecodeError` (dead-letter it) or `SkippedEventError` (ignore it)."""
    if record.value is None:
        raise EventDecodeError("empty message (tombstone)")
    event = decode_envelope(record.value)
    if accepted_types is not None and event.type not in accepted_types:
        if event_topic(event.type) == record.topic:
            raise SkippedEventError(event.type)  # an event of the topic we ignore
        raise UnknownEventTypeError(
            f"event type {event.type!r} does not belong on topic {record.topic!r}"
        )
    key = record.key.decode(errors="replace") if record.key is not None else None
    if key != event.subject:
        raise EventDecodeError(
            "the Kafka key must equal the CloudEvents subject (the customer id); "
            f"key is {'missing' if key is None else 'different'}"
        )
    if record.topic in EXTERNAL_TOPICS:
        if record.timestamp_ms is not None:
            now = min(now, datetime.fromtimestamp(record.timestamp_ms / 1000, UTC))
        check_not_in_the_future(event, now)
    return event


Unprocessed = Callable[[Sequence[CloudEvent[Any]]], Awaitable[Sequence[CloudEvent[Any]]]]
"""The inbox's lookup (`Inbox.unprocessed`): of some events, those not applied yet."""


class BatchHandler(Protocol):
    async def __call__(self, events: Sequence[CloudEvent[Any]]) -> int:
        """Apply and persist the events; return how many were new (not already applied)."""
        ...


class BatchConsumer:
    def __init__(
        self,
        handle: BatchHandler,
        dead_letters: DeadLetters,
        *,
        health: Health,
        metrics: RuntimeMetrics,
        backoff: Backoff | None = None,
        accepted_types: Sequence[str] | None = None,
        unprocessed: Unprocessed | None = None,
        holder: str = "",
    ) -> None:
        """`unprocessed`: the service's inbox lookup (`Inbox.screen`). Given, the events of a
        batch already applied are found on their envelopes and skipped before their data is
        validated (the handler still deduplicates: its lookup is answered from this one, and
        the marks' unique key refuses what a replica applied in between); without it every
        accepted event's data is validated.

        `holder` names this consumer among the process's (`ServiceSettings.consumers`) in the
        readiness checks it fails: one that retries keeps them red while another applies."""
        self.handle = handle
        self.holder = holder
        self.unprocessed = unprocessed
        self.dead_letters = dead_letters
        self.health = health
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.accepted_types = set(accepted_types) if accepted_types is not None else None

    async def process(self, records: Sequence[InboundRecord]) -> None:
        """Process a batch; returns when every record is persisted or dead-lettered."""
        started = time.perf_counter()
        now = datetime.now(UTC)
        envelopes: list[tuple[InboundRecord, CloudEvent[Any]]] = []
        for record in records:
            envelope = await self._decoded(
                record, partial(check_envelope, record, self.accepted_types, now)
            )
            if envelope is not None:
                envelopes.append((record, envelope))
        valid: list[tuple[InboundRecord, CloudEvent[Any]]] = []
        for record, envelope in await self._not_applied(envelopes):
            event = await self._decoded(record, partial(decode_data, envelope))
            if event is not None:
                valid.append((record, event))
        if valid:
            await self._apply(valid)
        self.metrics.batch_seconds.labels(self.metrics.service).observe(
            time.perf_counter() - started
        )

    async def _decoded(
        self, record: InboundRecord, decode: Callable[[], CloudEvent[Any]]
    ) -> CloudEvent[Any] | None:
        """`decode()` of `record`, or None when it is skipped (counted) or dead-lettered (sent)."""
        try:
            return decode()
        except SkippedEventError as skipped:
            self.metrics.ignored.labels(self.metrics.service, record.topic, str(skipped)).inc()
        except EventDecodeError as exc:
            kind = "unknown_type" if isinstance(exc, UnknownEventTypeError) else "invalid"
            await self._dead_letter(record, str(exc), exc, kind)
        except Exception as exc:  # a decoder bug must not stall the partition
            log.exception("undecodable record", extra={"offset": record.offset})
            reason = f"could not be decoded: {type(exc).__name__}"
            await self._dead_letter(record, reason, exc, "invalid")
        return None

    async def _not_applied(
        self, items: list[tuple[InboundRecord, CloudEvent[Any]]]
    ) -> list[tuple[InboundRecord, CloudEvent[Any]]]:
        """The items whose event the inbox has not applied, in order (repeats within the batch
        kept: the handler takes the first valid one). The others are counted as duplicates and
        not validated: their data was valid when they were applied, and a redelivery whose data
        differs under the same `source` and `id` would change nothing either way (ADR 0017)."""
        if self.unprocessed is None or not items:
            return items
        lookup = self.unprocessed
        fresh = await self._retrying("inbox", lambda: lookup([event for _, event in items]))
        new_keys = {event_key(event) for event in fresh}
        kept = [(record, event) for record, event in items if event_key(event) in new_keys]
        if len(kept) < len(items):
            self.metrics.duplicates.labels(self.metrics.service).inc(len(items) - len(kept))
            for record, event in items:
                if event_key(event) not in new_keys:
                    self.metrics.events.labels(self.metrics.service, record.topic, event.type).inc()
        return kept

    async def _apply(self, items: list[tuple[InboundRecord, CloudEvent[Any]]]) -> None:
        events = [event for _, event in items]
        try:
            applied = await self._retrying("apply", lambda: self.handle(events))
        except Exception as exc:
            if len(items) > 1:
                # Bisect, in order: one bad event in 500 costs about 2 × log2(500) = 18
                # transactions, not 500; each half keeps its customers' order.
                log.warning(
                    "batch failed, isolating the bad message",
                    extra={"error": type(exc).__name__, "size": len(items)},
                )
                middle = len(items) // 2
                await self._apply(items[:middle])
                await self._apply(items[middle:])
                return
            record, event = items[0]
            await self._dead_letter(
                record, f"handler failed on {event.type}: {exc}", exc, "handler"
            )
            return
        self.metrics.duplicates.labels(self.metrics.service).inc(len(events) - applied)
        for record, event in items:
            self.metrics.events.labels(self.metrics.service, record.topic, event.type).inc()

    async def _dead_letter(
        self, record: InboundRecord, reason: str, exc: BaseException, kind: str
    ) -> None:
        log.warning(
            "dead-lettering message",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "kind": kind,
                "error": type(exc).__name__,
            },
        )
        try:
            await self._retrying(
                "dead_letter", lambda: self.dead_letters.publish(record, reason, exc)
            )
        except Exception as refused:  # not transient (those are retried): the letter itself
            log.error(
                "dead letter refused, sending it without key and value",
                extra={"offset": record.offset, "error": type(refused).__name__},
            )
            try:
                await self._retrying(
                    "dead_letter", lambda: self.dead_letters.publish_bare(record, reason, exc)
                )
            except Exception as failed:
                # Never stall the partition on it: the record stays in its source topic, and
                # this line and the metric say where.
                log.error(
                    "dead letter could not be sent; the record is only in its source topic",
                    extra={
                        "topic": record.topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "error": type(failed).__name__,
                    },
                )
                self.metrics.dead_letters.labels(self.metrics.service, "unsent").inc()
                return
        self.metrics.dead_letters.labels(self.metrics.service, kind).inc()

    async def unreadable(
        self, topic: str, partition: int, first: int, last: int, exc: BaseException
    ) -> None:
        """A record batch the Kafka client cannot read (offsets `first`..`last`): one dead letter
        says so, and the caller moves the partition past it."""
        log.error(
            "dead-lettering an unreadable record batch",
            extra={
                "topic": topic,
                "partition": partition,
                "first_offset": first,
                "last_offset": last,
                "error": type(exc).__name__,
            },
        )
        await self._retrying(
            "dead_letter",
            lambda: self.dead_letters.publish_unreadable(topic, partition, first, last, exc),
        )
        self.metrics.dead_letters.labels(self.metrics.service, "unreadable").inc()

    async def _retrying(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call`, retrying transient failures with backoff for as long as they last;
        readiness is red meanwhile.

        A data key under a master key this replica does not hold is one of them: a
        configuration fault (a rotation's new key not distributed yet), never bad data. The
        batch is not committed and the partition waits, readiness names the key id, and
        `crm_master_key_missing_total` counts it (alert `CrmMasterKeyMissing`)."""
        check = f"consumer.{operation}"

        def failed(exc: BaseException) -> None:
            if isinstance(exc, MasterKeyMissingError):
                self.health.fail(MASTER_KEY_CHECK, str(exc), self.holder)
                self.metrics.master_key_missing.labels(self.metrics.service, exc.key_id).inc()
            self.health.fail(check, f"retrying after {type(exc).__name__}", self.holder)
            self.metrics.retries.labels(self.metrics.service, operation).inc()

        def succeeded() -> None:
            self.health.ok(check, self.holder)
            self.health.ok(MASTER_KEY_CHECK, self.holder)

        return await retrying(
            operation,
            call,
            self.backoff,
            on_failure=failed,
            on_success=succeeded,
        )
