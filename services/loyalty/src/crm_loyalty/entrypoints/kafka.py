"""Loyalty's Kafka subscription: members and orders; each batch goes to
`handlers.apply_events(events, repository=, rules=, clock=)`."""

from crm_loyalty import handlers
from crm_runtime.runtime import Subscription

SUBSCRIPTION = Subscription(
    handlers.apply_events,
    accepted_types=handlers.CONSUMED_TYPES,
    description="Orders earn and reverse points; registrations enrol (welcome bonus).",
)
