"""Trace context: every published event carries a `traceparent` in the trace of its cause, and
spans leave the process only when an OTLP endpoint is configured."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from crm_contracts import CloudEvent
from crm_contracts.loyalty.v1 import POINTS_EARNED, PointsEarned
from crm_contracts.orders.v1 import ORDER_PLACED
from crm_runtime.outbox import OutboundMessage
from crm_runtime.tracing import Tracing, tracer_provider

pytestmark = pytest.mark.unit
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CAUSE = f"00-{TRACE}-00f067aa0ba902b7-01"


def inbound(subject: str, traceparent: str | None) -> CloudEvent[Any]:
    return CloudEvent[Any](
        id=f"in-{subject}",
        source="orders",
        type=ORDER_PLACED,
        subject=subject,
        time="2026-12-01T10:00:00+00:00",
        traceparent=traceparent,
        data={},
    )


def outbound(subject: str, n: int, traceparent: str | None = None) -> OutboundMessage:
    event = CloudEvent[Any](
        id=f"out-{subject}-{n}",
        source="loyalty",
        type=POINTS_EARNED,
        subject=subject,
        time="2026-12-01T10:00:01+00:00",
        traceparent=traceparent,
        data=PointsEarned(points=10, balance=10),
    )
    return OutboundMessage("loyalty.v1", event)


def parts(traceparent: str | None) -> tuple[str, str, str]:
    assert traceparent is not None
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, len(trace_id), len(span_id)) == ("00", 32, 16)
    return trace_id, span_id, flags


def test_an_event_caused_by_a_traced_event_continues_its_trace_in_a_span_of_its_own() -> None:
    tracing = Tracing(tracer_provider("loyalty", "", 1.0), "loyalty")
    first, second = tracing.stamp([inbound("c1", CAUSE)], [outbound("c1", 1), outbound("c1", 2)])
    trace_id, span_id, flags = parts(first.event.traceparent)
    assert (trace_id, flags) == (TRACE, "01")
    assert span_id != "00f067aa0ba902b7"
    assert second.event.traceparent == first.event.traceparent  # one span for one cause


def test_an_untraced_cause_or_a_sweep_starts_a_new_trace_per_subject() -> None:
    """What one commit emits about one customer (an import's `customer.registered` and
    `customer.created`) is one new trace, in one span; another customer's is another."""
    tracing = Tracing(tracer_provider("loyalty", "", 1.0), "loyalty")
    stamped = tracing.stamp(
        [inbound("c1", None)], [outbound("c1", 1), outbound("c2", 1), outbound("c1", 2)]
    )
    first, other, second = (parts(m.event.traceparent) for m in stamped)
    assert first[0] != other[0]
    assert TRACE not in {first[0], other[0]}
    assert second == first, "one subject, one span"


def test_an_event_already_traced_is_kept_and_the_others_are_copies() -> None:
    tracing = Tracing(tracer_provider("loyalty", "", 1.0), "loyalty")
    mine = f"00-{'a' * 32}-{'b' * 16}-01"
    original = outbound("c1", 1, traceparent=mine)
    assert tracing.stamp([inbound("c1", CAUSE)], [original]) == [original]


def test_a_relayed_event_is_published_in_a_span_of_its_own_in_the_events_trace() -> None:
    tracing = Tracing(tracer_provider("loyalty", "", 1.0), "loyalty")
    span, header = tracing.publish_span("loyalty.v1", b"c1", "out-c1-1", CAUSE)
    span.end()
    trace_id, span_id, flags = parts(header)
    assert (trace_id, flags) == (TRACE, "01")
    assert span_id != "00f067aa0ba902b7"  # a span per hop (tests/e2e/test_tracing.py)
    assert isinstance(span, ReadableSpan)
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    _, again = tracing.publish_span("loyalty.v1", b"c1", "out-c1-1", CAUSE)
    assert parts(again)[1] != span_id  # each publish (a redelivery too) is a span


def test_an_untraced_relayed_event_is_published_in_a_new_trace() -> None:
    tracing = Tracing(tracer_provider("loyalty", "", 1.0), "loyalty")
    _, header = tracing.publish_span("loyalty.v1", b"c1", None, None)
    assert parts(header)[0] != TRACE


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


def test_spans_are_exported_over_otlp_http_only_when_an_endpoint_is_set(
    collector: tuple[str, list[tuple[str, bytes]]],
) -> None:
    endpoint, received = collector
    silent = Tracing(tracer_provider("loyalty", "", 1.0), "loyalty")
    silent.stamp([inbound("c1", CAUSE)], [outbound("c1", 1)])
    silent.shutdown()
    assert received == []

    exporting = Tracing(tracer_provider("loyalty", endpoint, 1.0), "loyalty")
    exporting.stamp([inbound("c1", CAUSE)], [outbound("c1", 1)])
    exporting.shutdown()  # flushes
    assert [path for path, _ in received] == ["/v1/traces"]
    body = received[0][1]
    assert b"crm-loyalty" in body
    assert bytes.fromhex(TRACE) in body
    assert b"loyalty process order.placed" in body


def test_an_event_with_a_remembered_cause_continues_that_trace_without_the_cause_in_batch() -> None:
    tracing = Tracing(tracer_provider("notify", "", 1.0), "notify")
    later = OutboundMessage("notify.v1", outbound("c1", 1).event, caused_by=CAUSE)
    [stamped] = tracing.stamp([], [later])
    trace_id, span_id, _ = parts(stamped.event.traceparent)
    assert (trace_id, span_id != "00f067aa0ba902b7") == (TRACE, True)
