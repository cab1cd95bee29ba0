"""The tickets' Kafka subscriber: complaints and surveys from the call center, grades from the
archive."""

from functools import partial

from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock
from crm_tickets import handlers
from crm_tickets.domain.rules import TicketRules
from crm_tickets.ports import TicketRepository


def subscribe(
    runtime: Runtime, repository: TicketRepository, rules: TicketRules, clock: Clock
) -> None:
    """Each batch: `handlers.apply_events(events, repository, rules=, clock=)`."""
    apply = partial(handlers.apply_events, repository=repository, rules=rules, clock=clock)
    runtime.consume(
        apply,
        accepted_types=handlers.CONSUMED_TYPES,
        description="Complaints open tickets, surveys record CSAT/NPS, grades set priorities.",
    )
