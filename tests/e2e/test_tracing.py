"""Trace context across services: a complaint traced by the call center leads to a ticket and an
e-mail whose events carry the same trace id, each hop in a span of its own, in the CloudEvents
`traceparent` and (the relay's publish span, `Tracing.publish_span`) in the Kafka `traceparent`
header."""

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from stackutil import (
    ServiceProcess,
    SmtpServer,
    Stack,
    cloud_event,
    collect,
    eventually,
    send,
    unique,
)

pytestmark = pytest.mark.e2e
TRACE = "0af7651916cd43dd8448eb211c80319c"
CALL_CENTER_SPAN = "b7ad6b7169203331"


@pytest.fixture(scope="module")
def tickets(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("tickets", stack).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def notify(stack: Stack, smtp: SmtpServer) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated(
        "notify",
        stack,
        smtp_host="127.0.0.1",
        smtp_port=str(smtp.port),
        deliver_interval_s="0.5",
    ).start()
    yield service
    service.stop()


def traced(event: bytes, traceparent: str) -> bytes:
    document = json.loads(event)
    document["traceparent"] = traceparent
    return json.dumps(document, ensure_ascii=False).encode()


def published(stack: Stack, topic: str, customer: str, event_type: str) -> Any:
    def mine(record: Any) -> bool:
        event = json.loads(record.value)
        return bool(event["subject"] == customer and event["type"] == event_type)

    records = asyncio.run(collect(stack.bootstrap, topic, mine, until=bool, timeout=60))
    assert records, f"no {event_type} for {customer} on {topic}"
    return records[0]


def context_of(record: Any) -> tuple[tuple[str, str], tuple[str, str]]:
    """(trace id, span id) of the CloudEvent's traceparent and of the Kafka header."""
    body = json.loads(record.value)["traceparent"].split("-")
    header = dict(record.headers)["traceparent"].decode().split("-")
    return (body[1], body[2]), (header[1], header[2])


def test_a_traced_complaint_keeps_its_trace_through_tickets_and_notify(
    stack: Stack, tickets: ServiceProcess, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    customer = unique("trace")
    address = f"{customer}@example.com"
    registered = cloud_event("customer.registered", customer, {"name": "韩梅梅", "email": address})
    send(stack, "members.v1", (customer, registered))
    eventually(lambda: notify.get(f"/preferences/{customer}").status_code == 200)
    complaint = cloud_event(
        "complaint.reported",
        customer,
        {
            "complaint_id": unique("C"),
            "channel": "phone",
            "description": "快递丢件",
            "category": "delivery",
            "severity": "high",
        },
    )
    send(stack, "callcenter.v1", (customer, traced(complaint, f"00-{TRACE}-{CALL_CENTER_SPAN}-01")))

    opened = published(stack, "tickets.v1", customer, "ticket.opened")
    (trace_1, span_1), (header_trace_1, header_span_1) = context_of(opened)
    assert trace_1 == header_trace_1 == TRACE
    assert len({span_1, header_span_1, CALL_CENTER_SPAN}) == 3  # a span per step

    ticket_event = json.loads(opened.value)["id"]
    events = [
        json.loads(r.value)
        for r in asyncio.run(
            collect(
                stack.bootstrap,
                "notify.v1",
                lambda r: json.loads(r.value)["subject"] == customer,
                until=lambda kept: (
                    len(kept) >= 2  # the welcome mail's and the ticket's
                    and any(
                        json.loads(r.value)["data"]["cause_event_id"] == ticket_event for r in kept
                    )
                ),
                timeout=60,
            )
        )
    ]
    [ack] = [e for e in events if e["data"]["cause_event_id"] == ticket_event]
    assert ack["type"] == "notification.sent"
    trace_2, span_2 = ack["traceparent"].split("-")[1:3]
    assert trace_2 == TRACE
    assert span_2 not in {span_1, header_span_1, CALL_CENTER_SPAN}
    # The untraced registration's welcome mail starts a trace of its own.
    [welcome] = [e for e in events if e["data"]["cause_event_id"] != ticket_event]
    assert welcome["traceparent"].split("-")[1] != TRACE
