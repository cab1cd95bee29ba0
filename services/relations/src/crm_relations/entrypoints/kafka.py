"""Relations' Kafka subscription: archive, members, tickets and orders; each batch goes to
`handlers.apply_events(events, repository=, rules=, clock=)`."""

from crm_relations import handlers
from crm_runtime.runtime import Subscription

SUBSCRIPTION = Subscription(
    handlers.apply_events,
    accepted_types=handlers.CONSUMED_TYPES,
    description="Customers' grade, stage and owner schedule their follow-ups; churn warnings "
    "and low CSAT make recovery calls and callbacks; orders fill agreements' periods; erasure "
    "requests forget.",
)
