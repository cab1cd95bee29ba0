"""Prometheus metrics the runtime keeps for every service (FastStream's middleware adds its own)."""

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    platform_collector,
    process_collector,
)


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.events = Counter(
            "crm_events_processed",
            "Valid inbound events handled (applied or found already applied), by topic and type.",
            ["service", "topic", "type"],
            registry=registry,
        )
        self.ignored = Counter(
            "crm_events_ignored",
            "Valid events of a consumed topic whose type this service does not use (skipped).",
            ["service", "topic", "type"],
            registry=registry,
        )
        self.duplicates = Counter(
            "crm_events_duplicate",
            "Inbound events skipped because their id was already applied.",
            ["service"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "crm_dlq_messages",
            "Messages sent to the service's dead-letter topic, by kind of failure.",
            ["service", "kind"],
            registry=registry,
        )
        self.retries = Counter(
            "crm_transient_retries",
            "Retries after a transient failure (broker or database unreachable, write conflict).",
            ["service", "operation"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "crm_batch_duration_seconds",
            "Time to apply and persist one consumed batch.",
            ["service"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.outbox_published = Counter(
            "crm_outbox_published",
            "Outbox events published to Kafka.",
            ["service"],
            registry=registry,
        )
        self.outbox_backlog = Gauge(
            "crm_outbox_backlog",
            "Outbox events not yet published.",
            ["service"],
            registry=registry,
        )
        self.outbox_oldest_age = Gauge(
            "crm_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox event.",
            ["service"],
            registry=registry,
        )


def new_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors (not the global one)."""
    registry = CollectorRegistry()
    process_collector.ProcessCollector(registry=registry)
    platform_collector.PlatformCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    return registry
