"""The four services as processes on the test stack, and a little traffic that moves each one's
business metrics (for the metrics-exposition and the Prometheus end-to-end tests)."""

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ops.known_metrics import SERVICES
from stackutil import (
    ServiceProcess,
    SmtpServer,
    Stack,
    cloud_event,
    order_placed,
    send,
    unique,
)


@contextlib.contextmanager
def running_suite(stack: Stack, smtp: SmtpServer) -> Iterator[dict[str, ServiceProcess]]:
    """Start archive, tickets, loyalty and notify (each with its own database and consumer
    group, on a free port) side by side; stop them all at the end."""
    settings: dict[str, dict[str, str]] = {
        "archive": {},
        "tickets": {},
        "loyalty": {},
        "notify": {
            "smtp_host": "127.0.0.1",
            "smtp_port": str(smtp.port),
            "deliver_interval_s": "0.5",
        },
    }
    services = {name: ServiceProcess.isolated(name, stack, **settings[name]) for name in SERVICES}
    try:
        with ThreadPoolExecutor(len(services)) as pool:
            for started in [pool.submit(service.start) for service in services.values()]:
                started.result()
        yield services
    finally:
        for service in services.values():
            service.stop()


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
