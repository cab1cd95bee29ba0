"""W3C trace context across the suite, in the CloudEvents `traceparent` (distributed tracing
extension) and in the Kafka headers: a publish span per relayed event (`Tracing.publish_span`),
and, when spans are exported, FastStream's OpenTelemetry middleware (`kafka.create_broker`): a
span per batch consumed and per `broker.publish` (dead letters).

Every event a service publishes carries a `traceparent`: a span of this service's handling, child
of the inbound event that caused it (the batch's latest event with the same subject, which is
the Kafka key, so the same customer) or of the cause a service remembered (`caused_by`: notify's
deliveries), or the root of a new trace when nothing traced caused it (a sweep, an HTTP
action, an untraced source): one per subject of the commit. The spans are exported over OTLP/HTTP
only when `CRM_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) is set: off by default, the
trace context still flows, so logs and events of one cause share a trace id. When nothing exports
them, no span is built at all: a new span id in the cause's trace (with its sampled flag; a new
trace sampled as the provider's sampler decides) is all a `traceparent` needs, and building two
SDK spans per relayed event was 9–12% of a service's CPU (docs/performance.md).
"""

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from crm_contracts import CloudEvent
from crm_runtime.outbox import OutboundMessage

PROPAGATOR = TraceContextTextMapPropagator()


def tracer_provider(service: str, otlp_endpoint: str, sample_ratio: float) -> TracerProvider:
    """The service's own provider (not the global one: tests run several services in a process)."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"crm-{service}", "service.namespace": "crm"}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    if otlp_endpoint:
        endpoint = otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


class Tracing:
    def __init__(self, provider: TracerProvider, service: str, *, exporting: bool = True) -> None:
        """`exporting`: spans leave the process (an OTLP endpoint is set). Without, the trace
        context is made without building spans (`traceparent`)."""
        self.provider = provider
        self.service = service
        self.exporting = exporting
        self.tracer = provider.get_tracer("crm_runtime")

    def traceparent(self, parent: str | None, name: str) -> str:
        """A W3C `traceparent` of a new span, child of `parent` (its trace id and sampled flag),
        or the root of a new trace when `parent` is absent or not a valid one: what a span
        started and injected gives, without the span (for when nothing exports spans)."""
        return _format(self._child(parent, name))

    def _child(self, parent: str | None, name: str) -> trace.SpanContext:
        context = PROPAGATOR.extract({"traceparent": parent}) if parent else None
        found = trace.get_current_span(context).get_span_context() if context else None
        if found is not None and found.is_valid:
            trace_id, flags = found.trace_id, found.trace_flags
        else:
            trace_id = random.getrandbits(128) or 1
            decision = self.provider.sampler.should_sample(None, trace_id, name).decision
            sampled = decision == Decision.RECORD_AND_SAMPLE
            flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else 0)
        span_id = random.getrandbits(64) or 1
        return trace.SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)

    def stamp(
        self, applied: Sequence[CloudEvent[Any]], outbound: Sequence[OutboundMessage]
    ) -> list[OutboundMessage]:
        """`outbound` with a `traceparent` on every event that has none (see the module doc)."""
        causes = {event.subject: event for event in applied if event.traceparent}
        spans: dict[str, trace.Span] = {}
        made: dict[str, str] = {}
        """The traceparents made without spans (not exporting), by cause."""
        stamped: list[OutboundMessage] = []
        try:
            for message in outbound:
                event = message.event
                if event.traceparent:
                    stamped.append(message)
                    continue
                cause = None if message.caused_by else causes.get(event.subject)
                # Nothing traced caused it: one new trace for what the commit emits about one
                # subject (a customer's `customer.registered` and `customer.created` are one act).
                key = message.caused_by or (cause.id if cause else f"new:{event.subject}")
                if not self.exporting:
                    if key not in made:
                        parent = message.caused_by or (cause.traceparent if cause else None)
                        made[key] = self.traceparent(parent, f"{self.service} emit {event.type}")
                    traced = event.model_copy(update={"traceparent": made[key]})
                    stamped.append(replace(message, event=traced))
                    continue
                span = spans.get(key)
                if span is None:
                    span = spans[key] = self._span(message, cause)
                carrier: dict[str, str] = {}
                PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
                traced = event.model_copy(update={"traceparent": carrier.get("traceparent")})
                stamped.append(replace(message, event=traced))
        finally:
            for span in spans.values():
                span.end()
        return stamped

    def _span(self, message: OutboundMessage, cause: CloudEvent[Any] | None) -> trace.Span:
        """A span processing `cause` (in its trace), or else emitting the event: in the trace it
        remembers (`caused_by`) or in a new one."""
        if cause is not None:
            return self.tracer.start_span(
                f"{self.service} process {cause.type}",
                context=PROPAGATOR.extract({"traceparent": cause.traceparent or ""}),
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.message.id": cause.id,
                    "cloudevents.event_type": cause.type,
                    "cloudevents.event_subject": cause.subject,
                },
            )
        event = message.event
        parent = (
            PROPAGATOR.extract({"traceparent": message.caused_by})
            if message.caused_by
            else otel_context.Context()
        )
        return self.tracer.start_span(
            f"{self.service} emit {event.type}",
            context=parent,
            kind=trace.SpanKind.PRODUCER,
            attributes={"cloudevents.event_type": event.type, "messaging.message.id": event.id},
        )

    def publish_span(
        self, topic: str, key: bytes, message_id: str | None, traceparent: str | None
    ) -> tuple[trace.Span, str]:
        """A producer span publishing one relayed event, child of the event's own trace context
        (`traceparent`, a root when it has none): a span per hop, as FastStream's telemetry
        middleware made. Returns the span (the caller ends it once the record is handed to the
        producer) and the W3C `traceparent` for the Kafka header. Not exporting, the span is a
        non-recording one (nothing to end or record) carrying the new span id."""
        if not self.exporting:
            child = self._child(traceparent, f"{topic} publish")
            return trace.NonRecordingSpan(child), _format(child)
        parent = (
            PROPAGATOR.extract({"traceparent": traceparent})
            if traceparent
            else otel_context.Context()
        )
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation": "publish",
            "messaging.destination.name": topic,
            "messaging.kafka.message.key": key.decode(errors="replace"),
        }
        if message_id:
            attributes["messaging.message.id"] = message_id
        span = self.tracer.start_span(
            f"{topic} publish", context=parent, kind=trace.SpanKind.PRODUCER, attributes=attributes
        )
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        return span, carrier["traceparent"]

    def shutdown(self) -> None:
        self.provider.shutdown()


def _format(context: trace.SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
