"""Trace context when no span leaves the process (no OTLP endpoint, the default): no span is
built, yet every published event still carries a `traceparent` in its cause's trace, with the
cause's sampled flag, a span id of its own, one per cause, and a new trace where nothing traced
caused it, as the SDK would make them."""

from typing import Any

import pytest
from opentelemetry import trace

from crm_contracts import CloudEvent
from crm_contracts.loyalty.v1 import POINTS_EARNED, PointsEarned
from crm_contracts.orders.v1 import ORDER_PLACED
from crm_runtime.outbox import OutboundMessage
from crm_runtime.tracing import Tracing, tracer_provider

pytestmark = pytest.mark.unit
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
SAMPLED = f"00-{TRACE}-{PARENT_SPAN}-01"
NOT_SAMPLED = f"00-{TRACE}-{PARENT_SPAN}-00"


def silent(ratio: float = 1.0) -> Tracing:
    return Tracing(tracer_provider("loyalty", "", ratio), "loyalty", exporting=False)


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


def outbound(subject: str, n: int) -> OutboundMessage:
    event = CloudEvent[Any](
        id=f"out-{subject}-{n}",
        source="loyalty",
        type=POINTS_EARNED,
        subject=subject,
        time="2026-12-01T10:00:01+00:00",
        data=PointsEarned(points=10, balance=10),
    )
    return OutboundMessage("loyalty.v1", event)


def parts(traceparent: str | None) -> tuple[str, str, str]:
    assert traceparent is not None
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, len(trace_id), len(span_id), len(flags)) == ("00", 32, 16, 2)
    assert int(trace_id, 16)
    assert int(span_id, 16)
    return trace_id, span_id, flags


@pytest.mark.parametrize(("cause", "flags"), [(SAMPLED, "01"), (NOT_SAMPLED, "00")])
def test_an_event_continues_its_causes_trace_and_sampled_flag_in_a_span_id_of_its_own(
    cause: str, flags: str
) -> None:
    first, second = silent().stamp([inbound("c1", cause)], [outbound("c1", 1), outbound("c1", 2)])
    trace_id, span_id, got_flags = parts(first.event.traceparent)
    assert (trace_id, got_flags) == (TRACE, flags)
    assert span_id != PARENT_SPAN
    assert second.event.traceparent == first.event.traceparent  # one span id for one cause


def test_an_untraced_cause_starts_a_new_trace_per_event_sampled_as_the_sampler_says() -> None:
    stamped = silent(1.0).stamp([inbound("c1", None)], [outbound("c1", 1), outbound("c2", 1)])
    assert len({parts(m.event.traceparent)[0] for m in stamped}) == 2
    assert {parts(m.event.traceparent)[2] for m in stamped} == {"01"}
    [never] = silent(0.0).stamp([], [outbound("c1", 1)])
    assert parts(never.event.traceparent)[2] == "00"


def test_a_remembered_cause_or_a_broken_one_gives_its_trace_or_a_new_one() -> None:
    remembered = OutboundMessage("notify.v1", outbound("c1", 1).event, caused_by=SAMPLED)
    broken = OutboundMessage("notify.v1", outbound("c2", 1).event, caused_by="00-zz-yy-01")
    kept, new = silent().stamp([], [remembered, broken])
    assert parts(kept.event.traceparent)[0] == TRACE
    assert parts(new.event.traceparent)[0] != TRACE


def test_a_relayed_event_is_published_with_a_new_span_id_in_its_trace_and_no_span_built() -> None:
    tracing = silent()
    span, header = tracing.publish_span("loyalty.v1", b"c1", "out-c1-1", SAMPLED)
    trace_id, span_id, flags = parts(header)
    assert (trace_id, flags) == (TRACE, "01")
    assert span_id != PARENT_SPAN
    assert not span.is_recording()
    assert f"{span.get_span_context().span_id:016x}" == span_id
    span.set_status(trace.StatusCode.ERROR)  # what the relay does on a failed send: harmless
    span.end()
    _, again = tracing.publish_span("loyalty.v1", b"c1", "out-c1-1", SAMPLED)
    assert parts(again)[1] != span_id  # each publish (a redelivery too) gets its own
    _, untraced = tracing.publish_span("loyalty.v1", b"c1", None, None)
    assert parts(untraced)[0] != TRACE


@pytest.mark.parametrize("exporting", [False, True])
def test_faststream_makes_batch_spans_only_when_spans_leave_the_process(exporting: bool) -> None:
    """FastStream's middleware builds a span per batch with a link to every record's producer:
    with nothing exporting them, that was 8-23% of a service's CPU (20,000-order replay) for
    spans no one sees."""
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
    from prometheus_client import CollectorRegistry

    from crm_runtime.kafka import create_broker
    from crm_runtime.settings import ServiceSettings

    provider = tracer_provider("loyalty", "", 1.0)
    broker = create_broker(ServiceSettings(), CollectorRegistry(), provider, exporting=exporting)
    telemetry = [m for m in broker.middlewares if isinstance(m, KafkaTelemetryMiddleware)]
    assert len(telemetry) == (1 if exporting else 0)
