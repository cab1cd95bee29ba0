"""Gauges refreshed at scrape time: lag per partition from the service's own consumer, business
gauges at most every interval, and a failing source that keeps its last values alone."""

import base64
from typing import Any, ClassVar

import pytest
from aiokafka import TopicPartition
from prometheus_client import generate_latest

from crm_runtime.runtime import Runtime
from crm_runtime.settings import ServiceSettings

pytestmark = pytest.mark.unit
KEY = base64.b64encode(bytes(32)).decode()


class Settings(ServiceSettings):
    service: ClassVar[str] = "gauges"


class FakeConsumer:
    def __init__(self, ends: dict[TopicPartition, int], committed: dict[TopicPartition, int]):
        self.ends, self.done = ends, committed

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in partitions}

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.done.get(tp)

    async def position(self, tp: TopicPartition) -> int:
        return 2  # where a group with nothing committed starts reading


class FakeSubscriber:
    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer


def runtime() -> Runtime:
    settings = Settings(master_keys={"k1": KEY}, master_key_id="k1", index_key=KEY)
    return Runtime(settings)


def sample(rt: Runtime, name: str, **labels: str) -> float | None:
    value = rt.registry.get_sample_value(name, {"service": "gauges", **labels})
    return value


async def test_lag_is_log_end_minus_committed_per_assigned_partition() -> None:
    rt = runtime()
    a0, a1, b0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
    rt._subscribers = [FakeSubscriber(FakeConsumer({a0: 10, a1: 7, b0: 5}, {a0: 4, a1: 7}))]
    await rt._refresh_lag()
    assert sample(rt, "crm_consumer_lag", topic="a", partition="0") == 6
    assert sample(rt, "crm_consumer_lag", topic="a", partition="1") == 0
    assert sample(rt, "crm_consumer_lag", topic="b", partition="0") == 3  # from position 2
    assert sample(rt, "crm_consumer_assigned_partitions") == 3

    rt._subscribers = [FakeSubscriber(FakeConsumer({a1: 9}, {a1: 7}))]  # a rebalance took two
    await rt._refresh_lag()
    assert sample(rt, "crm_consumer_lag", topic="a", partition="0") is None
    assert sample(rt, "crm_consumer_lag", topic="a", partition="1") == 2


async def test_a_process_with_two_consumers_reports_the_partitions_of_both() -> None:
    """The archive runs two consumers in one process (`consumers`): its lag and its assigned
    partitions are theirs together."""
    rt = runtime()
    a0, a1, b0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
    rt._subscribers = [
        FakeSubscriber(FakeConsumer({a0: 10, b0: 5}, {a0: 4, b0: 5})),
        FakeSubscriber(FakeConsumer({a1: 7}, {a1: 1})),
    ]
    await rt._refresh_lag()
    assert sample(rt, "crm_consumer_lag", topic="a", partition="0") == 6
    assert sample(rt, "crm_consumer_lag", topic="a", partition="1") == 6
    assert sample(rt, "crm_consumer_lag", topic="b", partition="0") == 0
    assert sample(rt, "crm_consumer_assigned_partitions") == 3
    assert rt.assigned_partitions() == 3

    rt._subscribers[1] = FakeSubscriber(FakeConsumer({}, {}))  # the group gave it nothing
    assert rt.assigned_partitions() == 2


async def test_a_business_gauge_is_read_at_most_every_interval_and_a_failure_stays_alone() -> None:
    rt = runtime()
    calls: list[str] = []

    async def good() -> None:
        calls.append("good")

    async def bad() -> None:
        calls.append("bad")
        raise ConnectionError("database down")

    async def no_outbox() -> None:
        return None

    rt._gauges[0] = ("outbox", no_outbox, 0.0, 2.0)  # no database in a unit test
    rt.gauges("good", good, min_interval_s=3600)
    rt.gauges("bad", bad, min_interval_s=3600)
    rt.gauges("bad_often", bad, min_interval_s=0)
    await rt.refresh_gauges()
    await rt.refresh_gauges()
    assert calls.count("good") == 1  # within its interval: not read again
    assert calls.count("bad") == 3  # "bad" once (a failed try waits its interval too) + twice
    assert sample(rt, "crm_gauge_refresh_failures_total", source="bad") == 1
    assert sample(rt, "crm_gauge_refresh_failures_total", source="bad_often") == 2
    assert b"crm_gauge_refresh_failures_total" in generate_latest(rt.registry)


def test_counters_export_no_created_series() -> None:
    rt = runtime()
    rt.metrics.events.labels("gauges", "t", "x").inc()
    exposition: Any = generate_latest(rt.registry).decode()
    assert "crm_events_processed_total" in exposition
    assert "_created" not in exposition
