"""Every topic of the suite: its name, partitions, key, producer, consumers and event types.

The local stack and the deployment provision topics from this registry, so it is the one place a
topic is declared.
"""

from dataclasses import dataclass

from crm_contracts.archive import v1 as archive_v1
from crm_contracts.callcenter import v1 as callcenter_v1
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_contracts.orders import v1 as orders_v1
from crm_contracts.privacy import v1 as privacy_v1
from crm_contracts.relations import v1 as relations_v1
from crm_contracts.tickets import v1 as tickets_v1

DEFAULT_PARTITIONS = 12
SERVICES = ("archive", "tickets", "loyalty", "notify", "relations")
CUSTOMER_KEY = "customer id (= CloudEvents subject)"
WEEK_MS = 7 * 24 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
PII_RETENTION_MS = 30 * DAY_MS
"""Inbound topics that carry personal data in plaintext keep it 30 days (deploy/SECURITY.md): long
enough to replay a month after an incident, short enough that an erasure reaches the log too."""


@dataclass(frozen=True)
class Topic:
    name: str
    producer: str
    consumers: tuple[str, ...]
    event_types: tuple[str, ...]
    partitions: int = DEFAULT_PARTITIONS
    key: str = CUSTOMER_KEY
    retention_ms: int = -1
    """-1 keeps events forever (replayable history); topics with personal data in plaintext keep
    30 days, DLQs two weeks."""
    description: str = ""


ORDERS = Topic(
    "orders.v1",
    producer="order system (external)",
    consumers=("archive", "loyalty", "relations"),
    event_types=tuple(orders_v1.EVENTS),
    description="Orders placed, refunded and cancelled.",
)
MEMBERS = Topic(
    "members.v1",
    producer="member system (external), archive",
    consumers=("archive", "tickets", "loyalty", "notify", "relations"),
    event_types=tuple(members_v1.EVENTS),
    retention_ms=PII_RETENTION_MS,
    description="Registrations, profile and consent changes, erasure requests: from the member "
    "system, and from the archive for the customers staff enter and edit (`source` crm/archive). "
    "Carries personal data in plaintext: kept 30 days.",
)
CALLCENTER = Topic(
    "callcenter.v1",
    producer="call-center system (external)",
    consumers=("archive", "tickets"),
    event_types=tuple(callcenter_v1.EVENTS),
    retention_ms=PII_RETENTION_MS,
    description="Contacts, complaints and survey answers. Free text may hold personal data: "
    "kept 30 days.",
)
ARCHIVE = Topic(
    "archive.v1",
    producer="archive",
    consumers=("tickets", "notify", "relations"),
    event_types=tuple(archive_v1.EVENTS),
    description="Changes in a customer's standing.",
)
TICKETS = Topic(
    "tickets.v1",
    producer="tickets",
    consumers=("archive", "notify", "relations"),
    event_types=tuple(tickets_v1.EVENTS),
    description="The life of complaint tickets: opened, assigned, SLA, resolved, CSAT.",
)
LOYALTY = Topic(
    "loyalty.v1",
    producer="loyalty",
    consumers=("archive", "notify"),
    event_types=tuple(loyalty_v1.EVENTS),
    description="Points earned, redeemed, reversed, expired; tier changes.",
)
NOTIFY = Topic(
    "notify.v1",
    producer="notify",
    consumers=(),
    event_types=tuple(notify_v1.EVENTS),
    description="Notifications sent, failed, suppressed or cancelled.",
)

RELATIONS = Topic(
    "relations.v1",
    producer="relations",
    consumers=("archive", "tickets", "notify"),
    event_types=tuple(relations_v1.EVENTS),
    key=CUSTOMER_KEY + "; the owner's user id for `tasks.digest_due`",
    description="Follow-up tasks (created, completed, overdue, owners' morning digests) and "
    "agreement customers: terms, fulfilment at risk, periods closed, renewals due. No free text.",
)

INBOUND: tuple[Topic, ...] = (ORDERS, MEMBERS, CALLCENTER)
PRIVACY = Topic(
    "privacy.v1",
    producer="archive, tickets, loyalty, notify, relations",
    consumers=("archive",),
    event_types=tuple(privacy_v1.EVENTS),
    description="Each service's confirmation that it erased a customer.",
)

OUTBOUND: tuple[Topic, ...] = (ARCHIVE, TICKETS, LOYALTY, NOTIFY, RELATIONS, PRIVACY)


def dlq_topic_name(service: str) -> str:
    """The dead-letter topic of a service: `<service>.dlq.v1`."""
    return f"{service}.dlq.v1"


DLQS: tuple[Topic, ...] = tuple(
    Topic(
        dlq_topic_name(service),
        producer=service,
        consumers=("ops",),
        event_types=(),
        partitions=3,
        key="the failed message's original key",
        retention_ms=2 * WEEK_MS,
        description=f"Messages {service} could not process, with the reason in headers.",
    )
    for service in SERVICES
)

ALL_TOPICS: tuple[Topic, ...] = INBOUND + OUTBOUND + DLQS


def topic(name: str) -> Topic:
    for candidate in ALL_TOPICS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no topic named {name!r}")


def consumed_by(service: str) -> tuple[Topic, ...]:
    return tuple(t for t in INBOUND + OUTBOUND if service in t.consumers)
