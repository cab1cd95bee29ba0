"""Reaching Kafka: bootstrap servers and the transport security the services use.

The security settings come from the same environment variables as the services'
(`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`; deploy/SECURITY.md), read through the
runtime's `ServiceSettings.kafka_client_options`, so the CLI and the services cannot disagree.
"""

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaError
from pydantic import ValidationError

from crm_cli.errors import EXIT_BROKER, CliError
from crm_runtime.settings import ServiceSettings

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
REQUEST_TIMEOUT_MS = 15_000
T = TypeVar("T")


def client_options(bootstrap: str) -> dict[str, Any]:
    """aiokafka keyword arguments: bootstrap servers and security from the environment."""
    try:
        settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
        options = settings.kafka_client_options()
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CliError(
            f"invalid Kafka setting in the environment: {where}: {first['msg']}"
        ) from exc
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot load the Kafka TLS files: {exc}") from exc
    return {"bootstrap_servers": bootstrap, **options}


def run(bootstrap: str, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; Kafka failures become one-line `CliError`s."""
    try:
        return asyncio.run(coroutine)
    except CliError:
        raise
    except (KafkaError, OSError, TimeoutError) as exc:
        detail = str(exc) or type(exc).__name__
        raise CliError(f"Kafka at {bootstrap}: {detail}", EXIT_BROKER) from exc


@asynccontextmanager
async def admin_client(options: dict[str, Any]) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(request_timeout_ms=REQUEST_TIMEOUT_MS, **options)
    await _start(admin.start, admin.close, options)
    try:
        yield admin
    finally:
        await admin.close()


@asynccontextmanager
async def producer_client(options: dict[str, Any]) -> AsyncIterator[AIOKafkaProducer]:
    """Idempotent, `acks=all`: as the services' producer."""
    producer = AIOKafkaProducer(
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=30_000,
        client_id="crm-cli",
        **options,
    )
    await _start(producer.start, producer.stop, options)
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def consumer_client(
    options: dict[str, Any], group_id: str | None = None
) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer that never commits on its own; without `group_id` it belongs to no group."""
    consumer = AIOKafkaConsumer(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        client_id="crm-cli",
        **options,
    )
    await _start(consumer.start, consumer.stop, options)
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _start(
    start: Callable[[], Awaitable[Any]], stop: Callable[[], Awaitable[Any]], options: dict[str, Any]
) -> None:
    """Start a client; if the broker cannot be reached, release it and say so in one line."""
    try:
        await start()
    except KafkaError as exc:
        await stop()
        raise CliError(
            f"cannot reach Kafka at {options['bootstrap_servers']}: {exc}", EXIT_BROKER
        ) from exc


async def partitions_of(admin: AIOKafkaAdminClient, topic: str) -> list[TopicPartition]:
    """The partitions of `topic`, or a `CliError` saying it does not exist."""
    described = await admin.describe_topics([topic])
    partitions = [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t["error_code"] == 0
        for p in t["partitions"]
    ]
    if not partitions:
        raise CliError(
            f"topic {topic} does not exist on the broker (`crm topics --create` creates it)",
            EXIT_BROKER,
        )
    return sorted(partitions, key=lambda tp: tp.partition)


async def retry_coordinator(call: Callable[[], Awaitable[T]], attempts: int = 20) -> T:
    """A fresh broker creates its group-coordinator topic on first use: wait for it."""
    for _ in range(attempts - 1):
        try:
            return await call()
        except GroupCoordinatorNotAvailableError:
            await asyncio.sleep(0.5)
    return await call()
