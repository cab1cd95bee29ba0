"""CPU per record of what every batch pays in-process: the archive's record encoded and decoded
(its orders' money as Decimal128), and the trace context of one relayed event (`Tracing.stamp` +
`Tracing.publish_span`, no OTLP exporter: the default). No stack; the best of 7 repeats, so the
figures hold on a busy machine better than a timed ingest does.

    python benchmarks/record_codec.py

To compare two commits side by side, run it with each one's sources first on `PYTHONPATH`
(`services/runtime/src`, `services/archive/src`, `contracts/src` of a worktree).
"""

import functools
import inspect
import os
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from crm_archive.adapters.documents import from_document, to_document
from crm_archive.domain.customer import Customer
from crm_contracts import CloudEvent
from crm_contracts.loyalty.v1 import POINTS_EARNED, PointsEarned
from crm_contracts.orders.v1 import ORDER_PLACED
from crm_runtime.crypto import NO_KEY, KeyRing
from crm_runtime.outbox import OutboundMessage
from crm_runtime.tracing import Tracing, tracer_provider

CAUSE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def best_us(call: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=7)) / number * 1e6


def customer(orders: int) -> Customer:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    record = Customer.first_sighting("c1", start, ORDER_PLACED)
    for n in range(orders):
        amount = Decimal(1000 + n * 7) / 100
        record.place_order(f"o{n}", start + timedelta(hours=n), amount, "CNY")
    return record


def trace_context(batch: int = 500) -> tuple[float, float]:
    """µs per event: stamping a batch's outbound events, and one relay publish span."""
    provider = tracer_provider("loyalty", "", 1.0)
    if "exporting" in inspect.signature(Tracing).parameters:
        tracing = Tracing(provider, "loyalty", exporting=False)
    else:  # a commit before the silent path: spans always built
        tracing = Tracing(provider, "loyalty")
    causes = [
        CloudEvent[Any](
            id=f"in-{n}",
            source="orders",
            type=ORDER_PLACED,
            subject=f"c{n}",
            time="2026-12-01T10:00:00+00:00",
            traceparent=CAUSE,
            data={},
        )
        for n in range(batch)
    ]
    outbound = [
        OutboundMessage(
            "loyalty.v1",
            CloudEvent[Any](
                id=f"out-{n}",
                source="loyalty",
                type=POINTS_EARNED,
                subject=f"c{n}",
                time="2026-12-01T10:00:01+00:00",
                data=PointsEarned(points=10, balance=10),
            ),
        )
        for n in range(batch)
    ]

    def publish() -> None:
        span, _ = tracing.publish_span("loyalty.v1", b"c1", "out-1", CAUSE)
        span.end()

    stamp = best_us(lambda: tracing.stamp(causes, outbound), 5) / batch
    return stamp, best_us(publish, 2000)


def main() -> None:
    ring = KeyRing({"k": os.urandom(32)}, "k", os.urandom(32))
    load = os.getloadavg()[0]
    for orders in (3, 30):
        record = customer(orders)
        document = to_document(record, NO_KEY, ring)
        encode = best_us(functools.partial(to_document, record, NO_KEY, ring), 300)
        decode = best_us(functools.partial(from_document, document, NO_KEY), 300)
        print(
            f"archive record with {orders} orders: encode {encode:.0f} µs, decode {decode:.0f} µs"
        )
    stamp, publish = trace_context()
    print(f"trace context per relayed event: stamp {stamp:.0f} µs + publish span {publish:.0f} µs")
    print(f"(load average {load:.1f} at the start)")


if __name__ == "__main__":
    main()
