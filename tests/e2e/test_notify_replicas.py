"""ADR 0028: notify runs as two processes in one group and one database, each reading some of its
topics (`CRM_NOTIFY_TOPICS`), as the local stack runs it (`REPLICAS` in deploy/local/stack.py):
what a person waits on (a complaint's acknowledgement, a registration) in the first, what follows
from the ledgers (a tier change) in a bulk replica that relays and sweeps nothing but sends what
it decides. Each message is decided by the process that reads its topic, sent once, and published
on `notify.v1` by the first process's relay."""

import asyncio
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
    local_stack,
    send,
    ticket_opened,
    unique,
)

pytestmark = pytest.mark.e2e
BULK = local_stack.REPLICAS["notify-bulk"]


@pytest.fixture(scope="module")
def processes(stack: Stack, smtp: SmtpServer) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    first = ServiceProcess.isolated(
        "notify",
        stack,
        smtp_host="127.0.0.1",
        smtp_port=str(smtp.port),
        deliver_interval_s="0.5",
    )
    first.env |= local_stack.first_process_env("notify", local_stack.REPLICAS)
    bulk = ServiceProcess(  # the same database and group (`isolated` chose them), its topics
        "notify", stack, env={**first.env, **local_stack.replica_settings(BULK)}
    )
    first.start()
    bulk.start()
    yield first, bulk
    bulk.stop()
    first.stop()


def sent(notify: ServiceProcess, customer: str, template: str) -> list[dict[str, Any]]:
    items = notify.get("/notifications", customer_id=customer, template=template).json()["items"]
    return [i for i in items if notify.get(f"/notifications/{i['id']}").json()["status"] == "sent"]


def test_each_process_decides_what_its_topics_bring_and_the_first_publishes_both(
    stack: Stack, processes: tuple[ServiceProcess, ServiceProcess], smtp: SmtpServer
) -> None:
    first, bulk = processes
    customer = unique("split")
    address = f"{customer}@example.com"
    registered = {"name": "李雷", "email": address}
    send(stack, "members.v1", (customer, cloud_event("customer.registered", customer, registered)))
    # Registered before the tier changes: applied at once by two processes, a registration and a
    # message decided for it may cross (ADR 0021: the message then waits for the awaiting sweep).
    eventually(lambda: sent(first, customer, "welcome"), timeout=30)
    ticket_id = unique("T")
    tier = {"tier": "gold", "previous_tier": "silver", "qualifying_points": 5200}
    send(stack, "tickets.v1", (customer, ticket_opened(customer, ticket_id)))
    send(stack, "loyalty.v1", (customer, cloud_event("tier.changed", customer, tier)))

    acknowledged = f"我们已收到您的反馈（工单 {ticket_id}）"
    eventually(lambda: sent(first, customer, "ticket_ack"), timeout=30)
    eventually(lambda: sent(first, customer, "tier_changed"), timeout=30)
    subjects = [m["Subject"] for m in smtp.mailbox.to(address)]
    assert subjects.count(acknowledged) == 1
    assert len([s for s in subjects if "gold" in s]) == 1

    # each event was applied by the process that reads its topic, and only there
    assert first.processed("tickets.v1", "ticket.opened") == 1
    assert bulk.processed("tickets.v1", "ticket.opened") == 0
    assert bulk.processed("loyalty.v1", "tier.changed") == 1
    assert first.processed("loyalty.v1", "tier.changed") == 0

    # what the bulk replica decided leaves through the first process's relay
    published = asyncio.run(
        collect(
            stack.bootstrap,
            "notify.v1",
            lambda r: r.key == customer.encode() and b"notification.sent" in r.value,
            until=lambda kept: len(kept) >= 3,  # the welcome, the acknowledgement, the tier
            timeout=30,
        )
    )
    assert len(published) == 3
    assert bulk.metric("crm_outbox_published_total") == 0
