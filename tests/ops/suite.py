"""The five services as processes on the test stack, and a little traffic that moves each one's
business metrics (for the metrics-exposition and the Prometheus end-to-end tests)."""

from dataclasses import dataclass

from stackutil import (
    Stack,
    cloud_event,
    order_placed,
    send,
    unique,
)


@dataclass(frozen=True)
class Traffic:
    customer: str
    order_id: str
    points: int


def send_traffic(stack: Stack) -> Traffic:
    """A registration (every service consumes members.v1), an order (archive, loyalty: it earns
    points) and a complaint (archive, tickets: it opens a ticket, which notify hears of)."""
    customer = unique("ops")
    order_id = unique("o")
    registered = cloud_event(
        "customer.registered",
        customer,
        {"name": "韩梅梅", "email": f"{customer}@example.com", "source": "ops-tests"},
    )
    complaint = cloud_event(
        "complaint.reported",
        customer,
        {
            "complaint_id": unique("k"),
            "channel": "phone",
            "description": "the parcel never arrived",
            "category": "delivery",
            "severity": "high",
            "order_id": order_id,
        },
    )
    send(stack, "members.v1", (customer, registered))
    send(stack, "orders.v1", (customer, order_placed(customer, order_id, "199.00")))
    send(stack, "callcenter.v1", (customer, complaint))
    return Traffic(customer, order_id, 199)
