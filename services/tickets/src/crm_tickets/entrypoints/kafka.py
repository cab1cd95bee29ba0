"""The tickets' Kafka subscription: complaints and surveys from the call center, grades from the
archive, agreements from relations; each batch goes to
`handlers.apply_events(events, repository=, rules=, clock=)`."""

from crm_runtime.runtime import Subscription
from crm_tickets import handlers

SUBSCRIPTION = Subscription(
    handlers.apply_events,
    accepted_types=handlers.CONSUMED_TYPES,
    description="Complaints open tickets, surveys record CSAT/NPS (a survey naming another "
    "customer's ticket is dead-lettered), grades set priorities, agreements (relations) set "
    "their customers' first-response SLA.",
)
