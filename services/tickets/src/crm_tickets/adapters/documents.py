"""How tickets, agents and pending surveys look in MongoDB: the documents written and read back.

Free text a person typed (a ticket's description, comments, a reopening's reason) may hold
personal data: it is sealed with the customer's data key (ADR 0006); everything else stays plain
for queries and reports. A ticket's figures are stored as the domain computed them.
"""

from datetime import date
from typing import Any

from crm_runtime.crypto import FieldCipher
from crm_runtime.documents import dataclass_document, dataclass_from
from crm_runtime.mongo import Document
from crm_tickets.domain.agent import Agent
from crm_tickets.domain.agreement import AgreementSla
from crm_tickets.domain.ticket import Change, Comment, SlaState, Survey, Ticket, TicketFigures
from crm_tickets.ports import PendingSurvey

FREE_TEXT_DETAILS = frozenset({"reason"})
"""History details typed by people (a reopening's reason): sealed like the comments."""


def _seal(details: dict[str, Any], cipher: FieldCipher, place: str) -> dict[str, Any]:
    return {
        k: cipher.seal(f"{place}/{k}", v) if k in FREE_TEXT_DETAILS and v is not None else v
        for k, v in details.items()
    }


def _open(details: dict[str, Any], cipher: FieldCipher, place: str) -> dict[str, Any]:
    return {
        k: cipher.open(f"{place}/{k}", v) if k in FREE_TEXT_DETAILS and v is not None else v
        for k, v in details.items()
    }


def to_document(ticket: Ticket, figures: TicketFigures, cipher: FieldCipher) -> Document:
    """Description and comment texts (free text: may hold personal data) are sealed with the
    customer's data key; `figures` are stored as the domain computed them."""
    return {
        "_id": ticket.ticket_id,
        "customer_id": ticket.customer_id,
        "opened_at": ticket.opened_at,
        "channel": ticket.channel,
        "category": ticket.category,
        "severity": ticket.severity,
        "priority": ticket.priority,
        "queue": ticket.queue,
        "status": ticket.status,
        "complaint_id": ticket.complaint_id,
        "order_id": ticket.order_id,
        "description": cipher.seal(f"{ticket.ticket_id}/description", ticket.description),
        "intake_fingerprint": ticket.intake_fingerprint,
        "assignee": ticket.assignee,
        "comments": [
            {
                "id": c.comment_id,
                "at": c.at,
                "author": c.author,
                "text": cipher.seal(f"{ticket.ticket_id}/comment/{c.comment_id}", c.text),
                "public": c.public,
            }
            for c in ticket.comments
        ],
        "root_causes": ticket.root_causes,
        "history": [
            {
                "at": h.at,
                "actor": h.actor,
                "action": h.action,
                "details": _seal(h.details, cipher, f"{ticket.ticket_id}/history/{i}"),
            }
            for i, h in enumerate(ticket.history)
        ],
        "status_log": [{"at": at, "status": status} for at, status in ticket.status_log],
        "first_response_at": ticket.first_response_at,
        "resolved_at": ticket.resolved_at,
        "closed_at": ticket.closed_at,
        "sla": {k: {"warned": v.warned, "breached": v.breached} for k, v in ticket.sla.items()},
        "breached": ticket.breached,
        "escalated": ticket.escalated,
        "survey": (
            {
                "id": ticket.survey.survey_id,
                "at": ticket.survey.at,
                "csat": ticket.survey.csat,
                "nps": ticket.survey.nps,
            }
            if ticket.survey
            else None
        ),
        "flagged_for_review": ticket.flagged_for_review,
        "history_omitted": ticket.history_omitted,
        "agreement_first_response_s": ticket.agreement_first_response_s,
        # Figures for reports (business seconds), and when the sweep should look again.
        "first_response_s": figures.first_response_s,
        "resolution_s": figures.resolution_s,
        "next_check_at": figures.next_check_at,
        "version": ticket.version,
    }


def from_document(doc: Document, cipher: FieldCipher) -> Ticket:
    """A shredded key (the customer was erased) opens nothing: texts come back empty."""
    survey = doc.get("survey")
    return dataclass_from(
        Ticket,
        doc,
        "ticket_id",
        description=cipher.open(f"{doc['_id']}/description", doc.get("description")) or "",
        comments=[
            Comment(
                c["id"],
                c["at"],
                c["author"],
                cipher.open(f"{doc['_id']}/comment/{c['id']}", c.get("text")) or "",
                c["public"],
            )
            for c in doc.get("comments", [])
        ],
        history=[
            Change(
                h["at"],
                h["actor"],
                h["action"],
                _open(h.get("details", {}), cipher, f"{doc['_id']}/history/{i}"),
            )
            for i, h in enumerate(doc.get("history", []))
        ],
        status_log=[(s["at"], s["status"]) for s in doc.get("status_log", [])],
        sla={k: SlaState(v["warned"], v["breached"]) for k, v in doc.get("sla", {}).items()},
        survey=Survey(survey["id"], survey["at"], survey["csat"], survey["nps"])
        if survey
        else None,
    )


def agreement_document(agreement: AgreementSla) -> Document:
    """Dates as ISO text (BSON has no date without a time)."""
    return dataclass_document(
        agreement,
        "agreement_id",
        starts_on=agreement.starts_on.isoformat(),
        ends_on=agreement.ends_on.isoformat(),
    )


def agreement_from_document(doc: Document) -> AgreementSla:
    return dataclass_from(
        AgreementSla,
        doc,
        "agreement_id",
        starts_on=date.fromisoformat(doc["starts_on"]),
        ends_on=date.fromisoformat(doc["ends_on"]),
    )


def agent_document(agent: Agent) -> Document:
    return dataclass_document(agent, "agent_id")


def agent_from_document(doc: Document) -> Agent:
    return dataclass_from(
        Agent,
        doc,
        "agent_id",
        name=doc.get("name", ""),
        queues=list(doc.get("queues", [])),
        capacity=doc.get("capacity", 0),
    )


def pending_document(survey: PendingSurvey) -> Document:
    return dataclass_document(survey, "ticket_id")


def pending_from_document(doc: Document) -> PendingSurvey:
    return dataclass_from(PendingSurvey, doc, "ticket_id", csat=doc.get("csat"), nps=doc.get("nps"))


def listed_from_document(doc: Document) -> Ticket:
    """A ticket of a list, read without its texts (description, comments, history): what its
    SLA clocks need, and nothing sealed is opened."""
    return dataclass_from(
        Ticket,
        doc,
        "ticket_id",
        description="",
        comments=[],
        history=[],
        status_log=[(s["at"], s["status"]) for s in doc.get("status_log", [])],
        sla={k: SlaState(v["warned"], v["breached"]) for k, v in doc.get("sla", {}).items()},
        survey=None,
    )
