"""What a service process runs on while it is busy: uvloop's event loop, and a garbage collector
sized for batches (docs/performance.md, "The collector and the event loop")."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import (
    ServiceProcess,
    Stack,
    eventually,
    local_stack,
    order_placed,
    produce,
    unique,
)

pytestmark = pytest.mark.e2e

ORDERS = 2_000


@pytest.fixture(scope="module")
def archive(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("archive", stack).start()
    yield service
    service.stop()


YOUNG_COLLECTIONS = 'python_gc_collections_total{generation="0"}'
"""How many times the process's collector has collected its youngest generation."""


def test_a_service_runs_on_uvloop(archive: ServiceProcess) -> None:
    assert archive.proc is not None
    maps = Path(f"/proc/{archive.proc.pid}/maps").read_text()
    assert "uvloop" in maps, "the service's process has not loaded uvloop's event loop"


def test_a_busy_service_rarely_runs_the_collector(stack: Stack, archive: ServiceProcess) -> None:
    """At Python's default (a young collection every 700 allocations) applying 2,000 orders ran
    the collector about 200 times; sized for batches, a few times."""
    applied_before = local_stack.metric(archive.port, "crm_events_processed_total")
    collections_before = local_stack.metric(archive.port, YOUNG_COLLECTIONS)
    run = unique("gc")
    orders = [
        (f"{run}-c{n % 400}", order_placed(f"{run}-c{n % 400}", f"{run}-o{n}", "19.90"))
        for n in range(ORDERS)
    ]
    asyncio.run(produce(stack.bootstrap, "orders.v1", orders))
    eventually(
        lambda: (
            local_stack.metric(archive.port, "crm_events_processed_total")
            >= applied_before + ORDERS
        ),
        timeout=120,
    )
    collections = local_stack.metric(archive.port, YOUNG_COLLECTIONS) - collections_before
    assert collections < 25, f"{collections:.0f} young collections for {ORDERS:,} orders"
