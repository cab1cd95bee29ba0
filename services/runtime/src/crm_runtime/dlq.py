"""Dead letters: a message that cannot be processed goes to `<service>.dlq.v1`, with why.

The original key and value are kept byte for byte, so a fixed consumer can re-drive them. Headers:
`x-dlq-reason`, `x-dlq-exception`, `x-dlq-source-topic`, `x-dlq-source-partition`,
`x-dlq-source-offset`, `x-dlq-consumer-group`, `x-dlq-service`, `x-dlq-time`.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crm_contracts.topics import dlq_topic_name
from crm_runtime.logs import redact

REASON_MAX = 1000
REASON = "x-dlq-reason"
EXCEPTION = "x-dlq-exception"
SOURCE_TOPIC = "x-dlq-source-topic"
SOURCE_PARTITION = "x-dlq-source-partition"
SOURCE_OFFSET = "x-dlq-source-offset"
CONSUMER_GROUP = "x-dlq-consumer-group"
SERVICE = "x-dlq-service"
TIME = "x-dlq-time"
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


@dataclass(frozen=True)
class InboundRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


SendDeadLetter = Callable[[str, bytes | None, bytes, dict[str, str]], Awaitable[Any]]
"""(topic, key, value, headers) -> completes when the broker acknowledged."""


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
            REASON: redact(reason)[:REASON_MAX],
            EXCEPTION: type(exc).__name__ if exc else "",
            SOURCE_TOPIC: record.topic,
            SOURCE_PARTITION: str(record.partition),
            SOURCE_OFFSET: str(record.offset),
            CONSUMER_GROUP: group,
            SERVICE: service,
            TIME: datetime.now(UTC).isoformat(),
        }

    async def publish(self, record: InboundRecord, reason: str, exc: BaseException | None) -> None:
        headers = self.headers_for(
            record, reason, exc, service=self.service, group=self.consumer_group
        )
        await self.send(self.topic, record.key, record.value or b"", headers)
