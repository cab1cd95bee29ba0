"""What the tickets API answers: a ticket in full, an agent with their load."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from crm_runtime.views import view
from crm_tickets.domain.rules import TicketRules
from crm_tickets.domain.ticket import Ticket
from crm_tickets.queries import AgentLoad, TicketSummary, sla_clocks


class AgentView(BaseModel):
    id: str
    name: str
    queues: list[str]
    capacity: int
    active: bool
    open_tickets: int


def agent_view(loaded: AgentLoad) -> AgentView:
    agent = loaded.agent
    return view(AgentView, agent, id=agent.agent_id, open_tickets=loaded.open_tickets)


def ticket_view(ticket: Ticket, now: datetime, rules: TicketRules) -> dict[str, Any]:
    """The ticket with its texts (an audited read), its SLA clocks as of `now`, its history."""
    return {
        "id": ticket.ticket_id,
        "customer_id": ticket.customer_id,
        "status": ticket.status,
        "priority": ticket.priority,
        "severity": ticket.severity,
        "category": ticket.category,
        "channel": ticket.channel,
        "queue": ticket.queue,
        "assignee": ticket.assignee,
        "complaint_id": ticket.complaint_id,
        "order_id": ticket.order_id,
        "description": ticket.description,
        "opened_at": ticket.opened_at,
        "first_response_at": ticket.first_response_at,
        "resolved_at": ticket.resolved_at,
        "closed_at": ticket.closed_at,
        "root_causes": ticket.root_causes,
        "escalated": ticket.escalated,
        "sla": sla_clocks(ticket, now, rules),
        "survey": (
            {
                "survey_id": ticket.survey.survey_id,
                "at": ticket.survey.at,
                "csat": ticket.survey.csat,
                "nps": ticket.survey.nps,
            }
            if ticket.survey
            else None
        ),
        "flagged_for_review": ticket.flagged_for_review,
        "history_omitted": ticket.history_omitted,
        "comments": [
            {"id": c.comment_id, "at": c.at, "author": c.author, "text": c.text, "public": c.public}
            for c in ticket.comments
        ],
        "history": [
            {"at": h.at, "actor": h.actor, "action": h.action, "details": h.details}
            for h in ticket.history
        ],
    }


def summary_view(ticket: Ticket, now: datetime, rules: TicketRules) -> TicketSummary:
    """A line of the list (the ticket read without its texts), with its SLA clocks as of `now`."""
    return TicketSummary(
        id=ticket.ticket_id,
        customer_id=ticket.customer_id,
        status=ticket.status,
        priority=ticket.priority,
        category=ticket.category,
        queue=ticket.queue,
        assignee=ticket.assignee,
        opened_at=ticket.opened_at,
        breached=ticket.breached,
        flagged_for_review=ticket.flagged_for_review,
        first_response_at=ticket.first_response_at,
        resolved_at=ticket.resolved_at,
        sla=sla_clocks(ticket, now, rules),
    )
