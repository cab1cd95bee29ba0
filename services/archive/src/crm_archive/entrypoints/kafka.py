"""The archive's Kafka subscription: each batch goes to `handlers.apply_events(events,
repository=, rules=, clock=)`; the runtime derives the topics from the contracts' registry."""

from crm_archive import handlers
from crm_runtime.runtime import Subscription

SUBSCRIPTION = Subscription(
    handlers.apply_events,
    accepted_types=handlers.CONSUMED_TYPES,
    description="Members, orders, call-center events, ticket and loyalty-tier changes, completed "
    "follow-up tasks and agreements (relations).",
)
