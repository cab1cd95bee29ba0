"""The wiring every service shares: broker, database, inbox/outbox, relay, dead letters, health.

A service builds one `Runtime`, registers its batch handler with `consume`, and hands the runtime
to `create_http_app`, whose lifespan starts and stops everything.
"""

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker
from opentelemetry import trace

from crm_contracts import CloudEvent
from crm_contracts.topics import dlq_topic_name
from crm_runtime.audit import PiiAudit
from crm_runtime.auth import Authenticator
from crm_runtime.consumer import BatchConsumer, BatchHandler
from crm_runtime.crypto import CustomerKeys
from crm_runtime.dlq import DeadLetters
from crm_runtime.dlq_tail import DeadLetterTail
from crm_runtime.errors import is_transient
from crm_runtime.health import Health
from crm_runtime.kafka import create_broker, kafka_producer, subscribe_batches
from crm_runtime.metrics import RuntimeMetrics, new_registry
from crm_runtime.mongo import Inbox, create_client, ping
from crm_runtime.outbox import OutboundMessage, Outbox, OutboxRelay
from crm_runtime.retry import Backoff, retrying
from crm_runtime.settings import ServiceSettings
from crm_runtime.sweeps import Clock, Leases, SweepJob, SweepRunner, utc_now
from crm_runtime.tracing import Tracing, tracer_provider
from crm_runtime.uow import UnitOfWork

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 50_000
"""Allocations between two of the collector's young collections once a service has started
(Python's default: 700). A batch of 500 events builds tens of thousands of objects that live
until its commit: at 700 the collector traversed them again and again, 7-9% of a busy
service's CPU; at this size it runs a few times per ten thousand events, and what it frees is
still bounded (docs/performance.md, "The collector and the event loop")."""


@dataclass(frozen=True)
class Subscription:
    """What a service consumes, declared once in its `entrypoints/kafka.py`: the runtime derives
    the topics from the contracts' registry (`consumed_by(service)`) and wires the consumer."""

    apply: Callable[..., Coroutine[Any, Any, int]]
    """`apply(events, **context) -> applied`: the service's batch use case."""
    accepted_types: Sequence[str]
    """Event types it handles; others on its topics are skipped (not dead-lettered)."""
    description: str
    """For the AsyncAPI document."""


StartupStep = Callable[[], Awaitable[None]]
GaugeRefresh = Callable[[], Awaitable[None]]


class Runtime:
    def __init__(self, settings: ServiceSettings, clock: Clock = utc_now) -> None:
        settings.refuse_insecure_off_loopback()  # before anything connects or listens
        self.settings = settings
        self.service = settings.service
        self.registry = new_registry()
        self.metrics = RuntimeMetrics(self.registry, self.service)
        self.health = Health()
        self.auth = Authenticator(settings.api_tokens, settings.api_token_hashes)
        self.tracing = Tracing(
            tracer_provider(self.service, settings.otlp_endpoint, settings.trace_sample_ratio),
            self.service,
            exporting=bool(settings.otlp_endpoint),
        )
        self.broker: KafkaBroker = create_broker(
            settings, self.registry, self.tracing.provider, exporting=self.tracing.exporting
        )
        self.mongo = create_client(
            settings.mongodb_url, app_name=f"crm-{self.service}", **settings.mongodb_options()
        )
        self.db = self.mongo[settings.database]
        self.keys = CustomerKeys(self.db, settings.key_ring())
        self.audit = PiiAudit(self.db, self.service)
        self.inbox = Inbox(self.db, retention_s=settings.inbox_retention_s)
        self.outbox = Outbox(self.db)
        self._relay_leases = Leases(self.db)
        self.backoff = Backoff(settings.retry_initial_s, settings.retry_max_s)
        self.relay = OutboxRelay(
            self.outbox,
            self._send_unconfirmed,
            backoff=self.backoff,
            poll_interval_s=settings.outbox_poll_interval_s,
            retention_s=settings.outbox_retention_s,
            on_published=self.metrics.outbox_published.labels(self.service).inc,
            lead=self._lead_relay,
        )
        self.uow = UnitOfWork(self.mongo, self.inbox, self.outbox, stamp=self.tracing.stamp)
        self.uow.observe(lambda _: self.relay.wake())
        self.sweeps = SweepRunner(self.service, Leases(self.db), self.registry, clock)
        self.dead_letters = DeadLetters(
            self._send, service=self.service, consumer_group=settings.consumer_group
        )
        self.dead_letter_tail = DeadLetterTail(dlq_topic_name(self.service), self._dlq_clients)
        self._startup: list[StartupStep] = [
            self.inbox.ensure_indexes,
            self.outbox.ensure_indexes,
            self.keys.ensure_indexes,
            self.audit.ensure_indexes,
        ]
        self._subscribers: list[Any] = []
        """The batch subscribers, `settings.consumers` of them, once `consume` has run."""
        self._gauges: list[tuple[str, GaugeRefresh, float, float]] = []
        self._gauges_refreshed: dict[str, float] = {}
        self._event_counts: dict[str, list[Callable[[CloudEvent[Any]], None]]] = {}
        self.gauges("outbox", self._refresh_outbox, min_interval_s=0.0, timeout_s=2.0)
        # One offset request per assigned partition: at most every 5 s, however often scraped.
        self.gauges("consumer", self._refresh_lag, min_interval_s=5.0)
        self.uow.observe(self._count_committed)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        self.started = asyncio.Event()
        self.health.fail("startup", "starting")

    # -- wiring -------------------------------------------------------------------------------
    def on_startup(self, step: StartupStep) -> None:
        """Run `step` (e.g. create indexes) before consuming; retried while the database is down."""
        self._startup.append(step)

    def every(self, name: str, interval_s: float, job: SweepJob) -> None:
        """Run `job(now)` every `interval_s` seconds (one replica at a time); ops can run it on
        demand with `POST /ops/sweeps/{name}`."""
        self.sweeps.add(name, interval_s, job)

    def background(self, name: str, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `job()` for the service's life, from when it has started (database and broker
        reached) until it stops (cancelled): a worker the consumer feeds, say. The job handles
        its own failures; one that escapes ends it (logged)."""
        self._background.append((name, job))

    def gauges(
        self,
        name: str,
        refresh: GaugeRefresh,
        *,
        min_interval_s: float = 10.0,
        timeout_s: float = 5.0,
    ) -> None:
        """Gauges read from the database or the broker: `refresh()` sets them when /metrics is
        scraped, tried at most every `min_interval_s` (an aggregation per scrape would load a big
        database) for at most `timeout_s`; a failed try keeps the last values and counts in
        `crm_gauge_refresh_failures_total`."""
        self._gauges.append((name, refresh, min_interval_s, timeout_s))

    def on_committed(self, event_type: str, count: Callable[[CloudEvent[Any]], None]) -> None:
        """Business counters: `count(event)` once for each committed outbound event of the type
        (after the transaction; a redelivered input that changed nothing is not counted)."""
        self._event_counts.setdefault(event_type, []).append(count)

    def _count_committed(self, outbound: Sequence[OutboundMessage]) -> None:
        for message in outbound:
            for count in self._event_counts.get(message.event.type, ()):
                count(message.event)

    def subscribe(self, subscription: "Subscription", **context: Any) -> list[BatchConsumer]:
        """Consume as `subscription` declares, its handler called with `context` (the repository,
        rules, clock...) after the events: `apply(events, **context)`."""
        return self.consume(
            functools.partial(subscription.apply, **context),
            accepted_types=subscription.accepted_types,
            description=subscription.description,
        )

    def consume(
        self,
        handle: BatchHandler,
        *,
        accepted_types: Sequence[str],
        description: str = "",
    ) -> list[BatchConsumer]:
        """`settings.consumers` consumers of the service's topics (those of `settings.topics`
        where set), each a member of its own in the service's group with partitions of its own,
        as a replica's would be: their batches are applied side by side (ADR 0026)."""
        topics = self.settings.consumed_topics()  # the registry says, once; `topics` may narrow
        count = self.settings.consumers
        consumers = [
            BatchConsumer(
                handle,
                self.dead_letters,
                health=self.health,
                metrics=self.metrics,
                backoff=self.backoff,
                accepted_types=accepted_types,
                unprocessed=self.inbox.screen,
                holder=f"{n} of {count}" if count > 1 else "",
            )
            for n in range(1, count + 1)
        ]
        self._subscribers = [
            subscribe_batches(
                self.broker, topics, consumer, self.settings, self.health, description=description
            )
            for consumer in consumers
        ]
        return consumers

    def _dlq_clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        """For `GET /dead-letters`: an admin client and a consumer without a group (it commits
        nothing), with the broker's security settings."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.settings.kafka_bootstrap_servers,
            "client_id": f"crm-{self.service}-dead-letters",
            **self.settings.kafka_client_options(),
        }
        consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **options)
        return AIOKafkaAdminClient(**options), consumer

    async def _send(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str]
    ) -> Any:
        return await self.broker.publish(value, topic, key=key, headers=headers)

    async def _send_unconfirmed(
        self, topic: str, key: bytes, value: bytes, headers: dict[str, str]
    ) -> Awaitable[Any]:
        """The relay's publish: straight to the broker's aiokafka producer (the same idempotent,
        `acks=all`, compressed one), without FastStream's per-message command and middlewares
        (docs/performance.md, 2026-12-03). The Kafka `traceparent` header is a publish span of
        our own, child of the event's trace context; the relay's count is
        `crm_outbox_published_total`. Returns the acknowledgement to await."""
        span, traceparent = self.tracing.publish_span(
            topic, key, headers.get("correlation_id"), headers.pop("traceparent", None)
        )
        try:
            headers["traceparent"] = traceparent
            ack: Awaitable[Any] = await kafka_producer(self.broker).send(
                topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
            )
            return ack
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR)
            raise
        finally:
            span.end()

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start in the background: the HTTP server answers `/healthz` while we connect."""
        self._tasks.append(asyncio.create_task(self._boot(), name=f"{self.service}-boot"))

    async def _boot(self) -> None:
        await self._retry_until_done("database", self._run_startup_steps)
        await self._retry_until_done("broker", self.broker.start)
        self.health.ok("startup")
        if self.settings.outbox_relay_enabled:
            relay = self.relay.run(self._relay_failed, self._relay_recovered)
            self._tasks.append(asyncio.create_task(relay))
        if self.settings.sweeps_enabled:
            for name in self.sweeps.sweeps:
                self._tasks.append(asyncio.create_task(self.sweeps.run_forever(name)))
        for name, job in self._background:
            self._tasks.append(asyncio.create_task(self._logged(name, job), name=name))
        # What start-up built (the app, the models' validators, the clients) lives as long as
        # the process: moved out of the collector's generations, the full collections of a busy
        # service no longer traverse it (docs/performance.md, the import's third pass). Then the
        # young generation is sized for batches, not for the default's 700 objects.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD)
        self.started.set()
        log.info("started", extra={"group": self.settings.consumer_group})

    async def _logged(self, name: str, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await job()
        except Exception:
            log.exception("background job ended", extra={"job": name})

    async def _run_startup_steps(self) -> None:
        for step in self._startup:
            await step()

    @property
    def _relay_lease(self) -> str:
        return f"outbox-relay:{self.service}"

    async def _lead_relay(self) -> bool:
        return await self._relay_leases.acquire(
            self._relay_lease, ttl_s=self.settings.outbox_relay_lease_s
        )

    def _relay_failed(self, exc: BaseException) -> None:
        self.health.fail("outbox.relay", f"relay failing with {type(exc).__name__}")

    def _relay_recovered(self) -> None:
        self.health.ok("outbox.relay")

    async def _retry_until_done(self, what: str, call: Callable[[], Awaitable[Any]]) -> None:
        """Retried while transient; the broker's start whatever failed (a broker that is not
        there yet fails in many ways)."""
        await retrying(
            f"startup.{what}",
            call,
            self.backoff,
            retry=lambda exc: what == "broker" or is_transient(exc),
            on_failure=lambda exc: self.health.fail(f"startup.{what}", f"cannot reach the {what}"),
            on_success=lambda: self.health.ok(f"startup.{what}"),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.broker.stop()
        with contextlib.suppress(Exception):  # another replica's relay takes over at once
            await asyncio.wait_for(self._relay_leases.release(self._relay_lease), timeout=2.0)
        await self.mongo.close()
        with contextlib.suppress(Exception):  # flushes spans: bounded, off the event loop
            await asyncio.wait_for(asyncio.to_thread(self.tracing.shutdown), timeout=5.0)

    # -- observation --------------------------------------------------------------------------
    def _consumers(self) -> list[AIOKafkaConsumer | None]:
        """Each subscriber's aiokafka consumer, None until it runs."""
        return [getattr(subscriber, "consumer", None) for subscriber in self._subscribers]

    def assigned_partitions(self) -> int:
        """The partitions the subscribers' consumers hold together."""
        held = 0
        for consumer in self._consumers():
            try:
                held += len(consumer.assignment()) if consumer is not None else 0
            except Exception:
                continue
        return held

    async def readiness(self) -> dict[str, Any]:
        problems = self.health.problems()
        if self.started.is_set():
            if not await ping(self.mongo):
                problems["database"] = "ping failed"
            if not await self.broker.ping(timeout=2.0):
                problems["broker"] = "ping failed"
            if self._subscribers and self.assigned_partitions() == 0:
                problems["consumer"] = "no partitions assigned"
        return {
            "ready": not problems,
            "problems": problems,
            "partitions_assigned": self.assigned_partitions(),
        }

    async def refresh_gauges(self) -> None:
        """Called by /metrics. Each source may fail alone: its gauges keep their last values."""
        now = time.monotonic()
        for name, refresh, interval, timeout in self._gauges:
            if now - self._gauges_refreshed.get(name, -interval) < interval:
                continue
            # Tried, not only succeeded: a database too slow for the timeout is not asked again
            # at every scrape (each try starts a scan the server finishes anyway).
            self._gauges_refreshed[name] = now
            try:
                await asyncio.wait_for(refresh(), timeout=timeout)
            except Exception as exc:
                self.metrics.gauge_refresh_failures.labels(self.service, name).inc()
                log.warning(
                    "gauge refresh failed", extra={"source": name, "error": type(exc).__name__}
                )

    async def _refresh_outbox(self) -> None:
        count, age = await self.outbox.backlog()
        self.metrics.outbox_backlog.labels(self.service).set(count)
        self.metrics.outbox_oldest_age.labels(self.service).set(age)

    async def _refresh_lag(self) -> None:
        """Lag per assigned partition, from this replica's own consumers: log end offset minus
        the group's committed offset (what KEDA's Kafka scaler measures too)."""
        lags: dict[TopicPartition, int] = {}
        for consumer in self._consumers():
            assigned: list[TopicPartition] = sorted(consumer.assignment()) if consumer else []
            if consumer is None or not assigned:
                continue
            ends = await consumer.end_offsets(assigned)
            committed = await asyncio.gather(*(consumer.committed(tp) for tp in assigned))
            for tp, done in zip(assigned, committed, strict=True):
                start = done if done is not None else await consumer.position(tp)
                lags[tp] = max(ends[tp] - start, 0)
        self.metrics.consumer_lag.clear()  # partitions another replica took are not ours
        for tp, lag in lags.items():
            self.metrics.consumer_lag.labels(self.service, tp.topic, str(tp.partition)).set(lag)
        self.metrics.assigned_partitions.labels(self.service).set(len(lags))
