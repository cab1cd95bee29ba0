"""The FastStream Kafka broker every service uses, and its batch subscriber.

- Producer: idempotent, `acks=all`, compressed (`kafka_compression_type`, zstd by default). The
  outbox relay publishes through it directly (`kafka_producer`); dead letters go through
  FastStream's `broker.publish`.
- Consumer: batches, `AckPolicy.MANUAL`: offsets are committed only after `BatchConsumer.process`
  returned, that is after the batch was persisted (or dead-lettered). If processing fails
  unexpectedly the consumer seeks back to the batch's first offsets, so nothing is skipped.
  (FastStream's default `ACK_FIRST` would lose the batch; `NACK_ON_ERROR` would loop on a poison
  message: the runtime dead-letters those instead.)
- Compressed batches (gzip, snappy, lz4, zstd) are read with `cramjam`; a record batch the client
  still cannot read (a codec it lacks, corrupt data) is dead-lettered as a range of offsets and
  the partition moves past it (`UnreadableBatches`).
"""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    CorruptRecordException,
    IllegalStateError,
    KafkaError,
    UnsupportedCodecError,
)
from aiokafka.structs import OffsetAndMetadata
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from crm_runtime.consumer import BatchConsumer
from crm_runtime.dlq import InboundRecord
from crm_runtime.errors import is_transient
from crm_runtime.health import Health
from crm_runtime.settings import ServiceSettings

log = logging.getLogger(__name__)


def broker_security(settings: ServiceSettings) -> BaseSecurity | None:
    """TLS and SASL from the environment (`KAFKA_SECURITY_PROTOCOL`...; deploy/SECURITY.md)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = settings.kafka_ssl_context()
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    kinds: dict[str, type[SASLPlaintext] | type[SASLScram256] | type[SASLScram512]] = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }
    return kinds[settings.kafka_sasl_mechanism](
        settings.kafka_sasl_username,
        settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=protocol == "SASL_SSL",
    )


PRODUCER_BATCH_BYTES = 256 * 1024
"""The most a producer gathers for one partition before it sends (aiokafka's default: 16 KB). A
relay's drain is up to 500 events of about 600 bytes, some 300 KB over the partitions: at 16 KB
a partition's share went out as several batches, each compressed, sent and validated by the
broker on its own. At this size it is about one batch a partition: 30% less of the relay's CPU
and 60% less of the broker's per event (docs/performance.md, "The collector and the event
loop"). Below the broker's `message.max.bytes` (1 MB) even uncompressed."""


def producer_options(compression: str) -> dict[str, Any]:
    """The suite's producer settings, the relay's among them: idempotent, `acks=all`, a 5 ms
    linger, batches of up to `PRODUCER_BATCH_BYTES` a partition, `compression` ("none":
    uncompressed). The benchmarks that publish as the relay does take them from here."""
    return {
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_batch_size": PRODUCER_BATCH_BYTES,
        "compression_type": None if compression == "none" else compression,
    }


def create_broker(
    settings: ServiceSettings,
    registry: CollectorRegistry,
    tracer_provider: TracerProvider,
    *,
    exporting: bool,
) -> KafkaBroker:
    """The service's broker. FastStream's OpenTelemetry middleware (a span per batch consumed,
    linked to each record's producer span; a span and a `traceparent` header per
    `broker.publish`) is there only when spans are `exporting`: otherwise nothing reads those
    spans, and making them, with a link read from every record's headers, was 8-23% of each
    service's CPU in a 20,000-order replay (docs/performance.md). The events' own trace context
    (`tracing.py`) flows either way."""
    telemetry = [KafkaTelemetryMiddleware(tracer_provider=tracer_provider)] if exporting else []
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=broker_security(settings),
        client_id=f"crm-{settings.service}",
        **producer_options(settings.kafka_compression_type),
        request_timeout_ms=30_000,
        middlewares=[
            *telemetry,
            KafkaPrometheusMiddleware(registry=registry, app_name=settings.service),
        ],
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
        graceful_timeout=15.0,
        description=f"The {settings.service} service of the CRM suite.",
    )


def kafka_producer(broker: KafkaBroker) -> AIOKafkaProducer:
    """The aiokafka producer `broker` started (its settings are `create_broker`'s), for publishing
    without FastStream's per-message path (command object, middlewares: 12-19% of a service's CPU
    in the relay, docs/performance.md). FastStream has no public accessor for it: this is the one
    place that knows where it is (`broker.config.producer`, a FastStream producer holding the
    aiokafka one), pinned by a unit test. Raises FastStream's `IncorrectState` before the broker
    started (the relay reports it and retries)."""
    state = broker.config.producer._producer  # type: ignore[attr-defined]
    producer = state.producer
    if not isinstance(producer, AIOKafkaProducer):  # FastStream moved it: fail loudly
        raise TypeError(f"the broker's producer is a {type(producer).__name__}")
    return producer


async def _keep_raw(message: StreamMessage[Any]) -> None:
    """The runtime decodes each record itself (to dead-letter the bad ones one by one)."""
    return None


def subscribe_batches(
    broker: KafkaBroker,
    topics: Sequence[str],
    consumer: BatchConsumer,
    settings: ServiceSettings,
    health: Health,
    *,
    description: str = "",
) -> Any:
    """Register the service's one batch subscriber on `topics`; returns the subscriber."""
    subscriber = broker.subscriber(
        *topics,
        group_id=settings.consumer_group,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        auto_offset_reset=settings.auto_offset_reset,
        ack_policy=AckPolicy.MANUAL,
        decoder=_keep_raw,
        title=f"{settings.service}-inbound",
        description=description,
    )

    # The one place the runtime reaches into FastStream: its fetch, to read past what cannot
    # be read (FastStream would log and fetch the same batch again, forever).
    subscriber.get_msg = UnreadableBatches(subscriber.get_msg, consumer).get_msg  # type: ignore[method-assign]

    @subscriber
    async def on_batch(body: Any, message: KafkaMessage) -> None:
        records = [
            InboundRecord(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            for r in message.raw_message
        ]
        try:
            await consumer.process(records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("batch processing failed; rewinding", extra={"error": type(exc).__name__})
            health.fail(
                "consumer.batch", f"batch failed with {type(exc).__name__}", consumer.holder
            )
            await message.nack()
            await asyncio.sleep(1.0)
            return
        health.ok("consumer.batch", consumer.holder)
        try:
            await message.ack()
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions: the new owner re-reads them, effects are idempotent.
            log.warning("offset commit failed", extra={"error": type(exc).__name__})

    return subscriber


PROBE_TIMEOUT_MS = 5_000


def _unreadable(exc: BaseException) -> bool:
    """An error reading fetched records that retrying will not cure (the batch is the problem)."""
    if isinstance(exc, UnsupportedCodecError | CorruptRecordException):
        return True
    return not isinstance(exc, KafkaError | ConsumerStoppedError) and not is_transient(exc)


class UnreadableBatches:
    """Wraps the subscriber's fetch: when the client cannot read a fetched record batch, find the
    partition and the offsets it covers, dead-letter them as one letter, commit past them and go
    on. Without it, FastStream logs the error and fetches the same batch again, forever.

    The consumer processes one batch at a time and commits after each, so at the failure the
    committed offsets are where every assigned partition stands (records the failed fetch had
    already taken from other partitions are read again from there, not lost)."""

    def __init__(self, fetch: Any, consumer: BatchConsumer) -> None:
        self.fetch = fetch
        self.consumer = consumer

    async def get_msg(self, consumer: AIOKafkaConsumer) -> tuple[Any, ...]:
        try:
            records: tuple[Any, ...] = await self.fetch(consumer)
            return records
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not _unreadable(exc):
                raise
            log.error("fetched records cannot be read", extra={"error": type(exc).__name__})
            await self.skip_unreadable(consumer, exc)
            return ()

    async def skip_unreadable(self, kafka: AIOKafkaConsumer, exc: BaseException) -> None:
        assigned = sorted(kafka.assignment())
        starts: dict[TopicPartition, int] = {}
        for tp in assigned:
            committed = await kafka.committed(tp)
            starts[tp] = committed if committed is not None else await kafka.position(tp)
            kafka.seek(tp, starts[tp])
        ends: dict[TopicPartition, int] = await kafka.end_offsets(assigned) if assigned else {}
        for tp in assigned:
            if starts[tp] >= ends[tp]:
                continue  # nothing fetched there
            if await self._readable_from(kafka, tp, starts[tp]) is not None:
                kafka.seek(tp, starts[tp])  # the probe took a record: read it again
                continue
            end = ends[tp]
            resume = starts[tp] + 1
            while resume < end and await self._readable_from(kafka, tp, resume) is None:
                resume += 1
            await self.consumer.unreadable(tp.topic, tp.partition, starts[tp], resume - 1, exc)
            kafka.seek(tp, resume)
            await kafka.commit({tp: OffsetAndMetadata(resume, "")})

    @staticmethod
    async def _readable_from(
        kafka: AIOKafkaConsumer, tp: TopicPartition, offset: int
    ) -> int | None:
        """Fetch one record of `tp` from `offset`: the offset to resume from when it can be read
        (or nothing is there yet), None when the client cannot read it."""
        kafka.seek(tp, offset)
        try:
            fetched = await kafka.getmany(tp, timeout_ms=PROBE_TIMEOUT_MS, max_records=1)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if _unreadable(exc):
                return None
            raise
        records = fetched.get(tp, [])
        return records[0].offset if records else offset
