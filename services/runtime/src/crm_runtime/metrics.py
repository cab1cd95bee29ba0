"""Prometheus metrics the runtime keeps for every service (FastStream's middleware adds its own)."""

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    platform_collector,
    process_collector,
)

from crm_contracts import CloudEvent


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
        self.master_key_missing = Counter(
            "crm_master_key_missing",
            "Attempts (consumed batches, HTTP requests) that met a data key wrapped by a master "
            "key this replica does not hold, by key id: a configuration fault, retried.",
            ["service", "key_id"],
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
        self.consumer_lag = Gauge(
            "crm_consumer_lag",
            "Messages behind: the partition's log end offset minus the offset this service's "
            "consumer group committed (the offset it reads from when nothing is committed).",
            ["service", "topic", "partition"],
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "crm_consumer_assigned_partitions",
            "Partitions assigned to this replica's consumer.",
            ["service"],
            registry=registry,
        )
        self.gauge_refresh_failures = Counter(
            "crm_gauge_refresh_failures",
            "Scrapes whose gauges from the database or the broker could not be refreshed "
            "(the gauges kept their last values), by source.",
            ["service", "source"],
            registry=registry,
        )


def new_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors (not the global one). Counters
    do not export `_created` series: they would double what Prometheus stores for nothing."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    process_collector.ProcessCollector(registry=registry)
    platform_collector.PlatformCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    return registry


def event_field(event: CloudEvent[Any], name: str, default: Any = None) -> Any:
    """A field of an event's data, whether the data is a contracts model or a plain dict."""
    data = event.data
    if isinstance(data, dict):
        return data.get(name, default)
    return getattr(data, name, default)
