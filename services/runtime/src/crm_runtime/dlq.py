"""Dead letters: a message that cannot be processed goes to `<service>.dlq.v1`, with why.

The original key and value are kept byte for byte, so a fixed consumer can re-drive them, unless
they would not fit in a Kafka record: then the letter keeps a prefix (`VALUE_KEPT` bytes of the
value, `KEY_KEPT` of the key) and says so. Headers, always: `x-dlq-reason`, `x-dlq-exception`,
`x-dlq-source-topic`, `x-dlq-source-partition`, `x-dlq-source-offset`, `x-dlq-consumer-group`,
`x-dlq-service`, `x-dlq-time`. And when they apply: `x-dlq-cut` (the original key and value sizes,
when either was cut), `x-dlq-value-sha256` (of the whole original value, when it was cut),
`x-dlq-last-offset` (a record batch the consumer could not read: the letter stands for the source
offsets from `x-dlq-source-offset` to this one, and carries no value).
"""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crm_contracts.topics import dlq_topic_name
from crm_runtime.logs import redact

REASON_MAX = 1000
VALUE_KEPT = 256 * 1024
"""A value longer than `LETTER_MAX` is cut to this prefix (the record must fit the producer's and
the broker's 1 MiB limits, headers included)."""
KEY_KEPT = 1024
LETTER_MAX = 512 * 1024
"""Key + value above this many bytes are cut."""
REASON = "x-dlq-reason"
EXCEPTION = "x-dlq-exception"
SOURCE_TOPIC = "x-dlq-source-topic"
SOURCE_PARTITION = "x-dlq-source-partition"
SOURCE_OFFSET = "x-dlq-source-offset"
CONSUMER_GROUP = "x-dlq-consumer-group"
SERVICE = "x-dlq-service"
TIME = "x-dlq-time"
CUT = "x-dlq-cut"
VALUE_SHA256 = "x-dlq-value-sha256"
LAST_OFFSET = "x-dlq-last-offset"
HEADERS = (
    REASON,
    EXCEPTION,
    SOURCE_TOPIC,
    SOURCE_PARTITION,
    SOURCE_OFFSET,
    CONSUMER_GROUP,
    SERVICE,
    TIME,
)
"""The headers of every dead letter, in this order."""
OPTIONAL_HEADERS = (CUT, VALUE_SHA256, LAST_OFFSET)
"""Headers a dead letter has when they apply."""


@dataclass(frozen=True)
class InboundRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    """The record's Kafka timestamp, when known."""


SendDeadLetter = Callable[[str, bytes | None, bytes, dict[str, str]], Awaitable[Any]]
"""(topic, key, value, headers) -> completes when the broker acknowledged."""


@dataclass(frozen=True)
class Letter:
    """What is sent to the dead-letter topic for one record."""

    key: bytes | None
    value: bytes
    headers: dict[str, str]


def bounded(key: bytes | None, value: bytes, headers: dict[str, str]) -> Letter:
    """The letter for `key` and `value`, cut when they would not fit in one record."""
    if len(key or b"") + len(value) <= LETTER_MAX:
        return Letter(key, value, headers)
    cut = {
        CUT: f"key {len(key or b'')} bytes, value {len(value)} bytes; "
        f"kept the first {KEY_KEPT} and {VALUE_KEPT}",
        VALUE_SHA256: hashlib.sha256(value).hexdigest(),
    }
    return Letter(
        key[:KEY_KEPT] if key is not None else None, value[:VALUE_KEPT], {**headers, **cut}
    )


class DeadLetters:
    def __init__(self, send: SendDeadLetter, *, service: str, consumer_group: str) -> None:
        self.send = send
        self.service = service
        self.consumer_group = consumer_group
        self.topic = dlq_topic_name(service)

    @staticmethod
    def headers_for(
        record: InboundRecord, reason: str, exc: BaseException | None, *, service: str, group: str
    ) -> dict[str, str]:
        return {
            REASON: redact(reason, REASON_MAX)[:REASON_MAX],
            EXCEPTION: type(exc).__name__ if exc else "",
            SOURCE_TOPIC: record.topic,
            SOURCE_PARTITION: str(record.partition),
            SOURCE_OFFSET: str(record.offset),
            CONSUMER_GROUP: group,
            SERVICE: service,
            TIME: datetime.now(UTC).isoformat(),
        }

    def letter(self, record: InboundRecord, reason: str, exc: BaseException | None) -> Letter:
        headers = self.headers_for(
            record, reason, exc, service=self.service, group=self.consumer_group
        )
        return bounded(record.key, record.value or b"", headers)

    async def publish(self, record: InboundRecord, reason: str, exc: BaseException | None) -> None:
        letter = self.letter(record, reason, exc)
        await self.send(self.topic, letter.key, letter.value, letter.headers)

    async def publish_bare(
        self, record: InboundRecord, reason: str, exc: BaseException | None
    ) -> None:
        """The last resort when a letter cannot be sent: the headers and the value's hash only."""
        letter = self.letter(record, reason, exc)
        headers = {
            **letter.headers,
            CUT: f"key {len(record.key or b'')} bytes, value {len(record.value or b'')} bytes; "
            "kept none (the letter could not be sent with them)",
            VALUE_SHA256: hashlib.sha256(record.value or b"").hexdigest(),
        }
        await self.send(self.topic, None, b"", headers)

    async def publish_unreadable(
        self, topic: str, partition: int, first: int, last: int, exc: BaseException
    ) -> None:
        """Source offsets `first`..`last` of a partition could not be read at all (a record
        batch compressed with an unknown codec, say): one letter with no value stands for them."""
        record = InboundRecord(topic, partition, first, None, None)
        reason = (
            f"record batch cannot be read ({type(exc).__name__}: {exc}); "
            f"offsets {first}..{last} skipped, read them from the source topic"
        )
        letter = self.letter(record, reason, exc)
        await self.send(self.topic, None, b"", {**letter.headers, LAST_OFFSET: str(last)})
