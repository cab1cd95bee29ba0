"""What relations publishes: each change as a `relations.v1` event, with an id derived from the
change itself (uuid5), so a replayed cause can never announce the same change twice."""

import uuid
from datetime import date
from typing import Any

from pydantic import BaseModel

from crm_contracts import new_event
from crm_contracts.relations import v1
from crm_contracts.topics import RELATIONS
from crm_relations.domain.agreement import Agreement, AtRisk, PeriodClosed, RenewalDue
from crm_relations.domain.events import (
    AgreementChanged,
    Change,
    DigestDue,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskOverdue,
    TaskReassigned,
    TaskRescheduled,
)
from crm_runtime.outbox import OutboundMessage

SOURCE = "crm/relations"


def terms(agreement: Agreement) -> v1.AgreementTerms:
    t = agreement.terms
    return v1.AgreementTerms(
        period=t.period,
        measure=t.measure,
        minimum=t.minimum,
        currency=t.currency,
        first_response_hours=t.first_response_hours,
        renewal_notice_days=t.renewal_notice_days,
    )


def _agreement_event(change: AgreementChanged) -> tuple[str, BaseModel]:
    a = change.agreement
    match change.kind:
        case "created":
            return v1.AGREEMENT_CREATED, v1.AgreementCreated(
                agreement_id=a.agreement_id,
                number=a.number,
                owner=a.owner,
                starts_on=a.starts_on,
                ends_on=a.ends_on,
                terms=terms(a),
            )
        case "amended":
            return v1.AGREEMENT_AMENDED, v1.AgreementAmended(
                agreement_id=a.agreement_id,
                owner=a.owner,
                ends_on=a.ends_on,
                terms=terms(a),
                by=change.by,
            )
        case "terminated":
            return v1.AGREEMENT_TERMINATED, v1.AgreementTerminated(
                agreement_id=a.agreement_id,
                terminated_on=a.terminated_on or a.ends_on,
                by=change.by,
            )
        case _:
            previous = change.previous_ends_on
            assert isinstance(previous, date)
            return v1.AGREEMENT_RENEWED, v1.AgreementRenewed(
                agreement_id=a.agreement_id,
                starts_on=a.starts_on,
                ends_on=a.ends_on,
                previous_ends_on=previous,
                by=change.by,
            )


def contract(change: Change) -> tuple[str, BaseModel, str]:
    """(event type, payload, a stable id for the change)."""
    match change:
        case TaskCreated(task=t):
            return (
                v1.TASK_CREATED,
                v1.TaskCreated(
                    task_id=t.task_id,
                    kind=t.kind,
                    owner=t.owner,
                    due_at=t.due_at,
                    reason=t.reason,
                    created_by=t.created_by,
                    agreement_id=t.agreement_id,
                ),
                f"task/{t.task_id}/created",
            )
        case TaskCompleted(task=t):
            assert t.completed_at is not None
            assert t.completed_by is not None
            assert t.outcome is not None
            nxt = change.next_follow_up
            return (
                v1.TASK_COMPLETED,
                v1.TaskCompleted(
                    task_id=t.task_id,
                    kind=t.kind,
                    by=t.completed_by,
                    outcome=t.outcome,
                    completed_at=t.completed_at,
                    due_at=t.due_at,
                    on_time=bool(t.on_time),
                    next_follow_up_on=nxt.due_at.date() if nxt else None,
                ),
                f"task/{t.task_id}/completed",
            )
        case TaskRescheduled(task=t):
            return (
                v1.TASK_RESCHEDULED,
                v1.TaskRescheduled(task_id=t.task_id, owner=t.owner, due_at=t.due_at),
                f"task/{t.task_id}/rescheduled/{change.at.isoformat()}",
            )
        case TaskReassigned(task=t):
            return (
                v1.TASK_REASSIGNED,
                v1.TaskReassigned(
                    task_id=t.task_id,
                    owner=t.owner,
                    previous_owner=change.previous_owner,
                    by=change.by,
                ),
                f"task/{t.task_id}/reassigned/{change.at.isoformat()}",
            )
        case TaskCancelled(task=t):
            return (
                v1.TASK_CANCELLED,
                v1.TaskCancelled(task_id=t.task_id, by=change.by, reason=change.reason),
                f"task/{t.task_id}/cancelled",
            )
        case TaskOverdue(task=t):
            return (
                v1.TASK_OVERDUE,
                v1.TaskOverdue(
                    task_id=t.task_id,
                    kind=t.kind,
                    owner=t.owner,
                    due_at=t.due_at,
                    business_days_overdue=change.business_days_late,
                    escalated=t.overdue_notices >= 2,
                ),
                f"task/{t.task_id}/overdue/{t.overdue_notices}",
            )
        case DigestDue():
            return (
                v1.TASKS_DIGEST_DUE,
                v1.TasksDigestDue(
                    owner=change.owner,
                    day=change.day,
                    due_today=change.due_today,
                    overdue=change.overdue,
                    tasks=[
                        v1.DigestTask(
                            task_id=t.task_id,
                            customer_id=t.customer_id,
                            kind=t.kind,
                            due_at=t.due_at,
                            overdue=t.due_at < change.at,
                            business_days_overdue=late,
                        )
                        for t, late in change.lines
                    ],
                ),
                f"digest/{change.digest_id}",
            )
        case AgreementChanged():
            event_type, payload = _agreement_event(change)
            at = change.at.isoformat()
            return (
                event_type,
                payload,
                f"agreement/{change.agreement.agreement_id}/{change.kind}/{at}",
            )
        case AtRisk(agreement=a, period=p):
            return (
                v1.AGREEMENT_FULFILMENT_AT_RISK,
                v1.AgreementFulfilmentAtRisk(
                    agreement_id=a.agreement_id,
                    period_start=p.start,
                    period_end=p.end,
                    measure=a.terms.measure,
                    minimum=a.terms.minimum,
                    fulfilled=max(change.fulfilled, 0),
                    projected=max(change.projected, 0),
                    currency=a.terms.currency,
                    owner=a.owner,
                    share_left=change.share_left,
                ),
                f"agreement/{a.agreement_id}/{p.start}/at_risk",
            )
        case PeriodClosed(agreement=a, period=p):
            return (
                v1.AGREEMENT_PERIOD_CLOSED,
                v1.AgreementPeriodClosed(
                    agreement_id=a.agreement_id,
                    period_start=p.start,
                    period_end=p.end,
                    measure=a.terms.measure,
                    minimum=a.terms.minimum,
                    fulfilled=max(change.fulfilled, 0),
                    currency=a.terms.currency,
                    met=bool(p.met),
                    owner=a.owner,
                ),
                f"agreement/{a.agreement_id}/{p.start}/closed",
            )
        case RenewalDue(agreement=a):
            return (
                v1.AGREEMENT_RENEWAL_DUE,
                v1.AgreementRenewalDue(
                    agreement_id=a.agreement_id,
                    ends_on=change.ends_on,
                    notice_days=a.terms.renewal_notice_days,
                    owner=a.owner,
                ),
                f"agreement/{a.agreement_id}/renewal/{change.ends_on}",
            )
    raise TypeError(f"no relations.v1 event for {type(change).__name__}")


def customer_of(change: Change) -> str:
    """The event's subject and key: the customer; for a digest, the owner it is for."""
    if isinstance(change, DigestDue):
        return change.owner
    task = getattr(change, "task", None)
    if task is not None:
        return str(task.customer_id)
    agreement: Any = getattr(change, "agreement", None)
    return str(agreement.customer_id)


def to_message(change: Change) -> OutboundMessage:
    event_type, payload, change_id = contract(change)
    customer_id = customer_of(change)
    event = new_event(
        event_type,
        source=SOURCE,
        subject=customer_id,
        data=payload,
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"relations/{customer_id}/{change_id}")),
        time=change.at,
    )
    return OutboundMessage(RELATIONS.name, event)
