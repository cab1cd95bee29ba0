"""The FastStream Kafka broker every service uses, and its batch subscriber.

- Producer: idempotent, `acks=all`.
- Consumer: batches, `AckPolicy.MANUAL`: offsets are committed only after `BatchConsumer.process`
  returned, that is after the batch was persisted (or dead-lettered). If processing fails
  unexpectedly the consumer seeks back to the batch's first offsets, so nothing is skipped.
  (FastStream's default `ACK_FIRST` would lose the batch; `NACK_ON_ERROR` would loop on a poison
  message: the runtime dead-letters those instead.)
"""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import CommitFailedError, IllegalStateError
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


def create_broker(
    settings: ServiceSettings, registry: CollectorRegistry, tracer_provider: TracerProvider
) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=broker_security(settings),
        client_id=f"crm-{settings.service}",
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=30_000,
        middlewares=[
            KafkaTelemetryMiddleware(tracer_provider=tracer_provider),
            KafkaPrometheusMiddleware(registry=registry, app_name=settings.service),
        ],
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
        graceful_timeout=15.0,
        description=f"The {settings.service} service of the CRM suite.",
    )


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

    @subscriber
    async def on_batch(body: Any, message: KafkaMessage) -> None:
        records = [
            InboundRecord(r.topic, r.partition, r.offset, r.key, r.value)
            for r in message.raw_message
        ]
        try:
            await consumer.process(records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("batch processing failed; rewinding", extra={"error": type(exc).__name__})
            health.fail("consumer.batch", f"batch failed with {type(exc).__name__}")
            await message.nack()
            await asyncio.sleep(1.0)
            return
        health.ok("consumer.batch")
        try:
            await message.ack()
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions: the new owner re-reads them, effects are idempotent.
            log.warning("offset commit failed", extra={"error": type(exc).__name__})

    return subscriber
