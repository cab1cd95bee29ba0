"""Which events ask for which messages, and what events say about a customer's preferences."""

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from crm_contracts import CloudEvent
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.relations import v1 as relations_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_notify.domain.notification import Intent
from crm_notify.domain.policy import Preferences

SUPERVISORS = "supervisors"
"""The recipient of a supervisors' message when the address book names none (recorded as
undeliverable, `staff:no_address`)."""


def intents_for(event: CloudEvent[Any], supervisors: Sequence[str] = ()) -> list[Intent]:
    """The messages `event` asks for; `supervisors`: the user ids staff escalations go to."""
    return [
        replace(
            intent, trace=event.traceparent, origin=event.source, occurred_at=_cause_time(event)
        )
        for intent in _intents_for(event, supervisors)
    ]


def _cause_time(event: CloudEvent[Any]) -> datetime | None:
    """When what a message is about happened, for its age (ADR 0023): the event's `time`. An
    expiry notice is about points that are still to expire: not aged."""
    if isinstance(event.data, loyalty_v1.PointsExpiringSoon):
        return None
    return event.time


def _intents_for(event: CloudEvent[Any], supervisors: Sequence[str]) -> list[Intent]:
    data, cause = event.data, event.id
    match data:
        case (
            relations_v1.TasksDigestDue()
            | relations_v1.TaskOverdue()
            | relations_v1.AgreementFulfilmentAtRisk()
            | relations_v1.AgreementPeriodClosed()
            | relations_v1.AgreementRenewalDue()
        ):
            return _for_staff(event, supervisors)
        case members_v1.CustomerRegistered():
            return [Intent("welcome", "transactional", cause)]
        case tickets_v1.TicketOpened():
            return [Intent("ticket_ack", "transactional", cause, {"ticket_id": data.ticket_id})]
        case tickets_v1.TicketResolved():
            return [Intent("survey_invite", "transactional", cause, {"ticket_id": data.ticket_id})]
        case tickets_v1.TicketSlaBreached():
            return [
                Intent(
                    "sla_alert",
                    "staff",
                    cause,
                    {"ticket_id": data.ticket_id, "priority": data.priority, "target": data.target},
                )
            ]
        case loyalty_v1.TierChanged():
            tiers: dict[str, Any] = {"tier": data.tier, "previous_tier": data.previous_tier}
            return [Intent("tier_changed", "transactional", cause, tiers)]
        case loyalty_v1.PointsExpiringSoon():
            expiring: dict[str, Any] = {
                "points": data.points,
                "expires_on": data.expires_at.date().isoformat(),
            }
            return [Intent("points_expiring", "transactional", cause, expiring)]
        case archive_v1.CustomerChurnRiskRaised():
            return [Intent("retention", "marketing", cause)]
    return []


def _for_staff(event: CloudEvent[Any], supervisors: Sequence[str]) -> list[Intent]:
    """Relations' events that call for a message to a person of ours: an owner's morning digest,
    a task escalated to the supervisors, an agreement alert to its owner (the supervisors when
    it has none). Only ids, kinds, dates and figures: no customer's personal data."""
    data, cause = event.data, event.id
    everyone = list(supervisors) or [SUPERVISORS]

    def to(
        recipients: Sequence[str | None], template: str, variables: dict[str, Any]
    ) -> list[Intent]:
        people = [r for r in recipients if r] or everyone
        return [Intent(template, "staff", cause, variables, recipient=r) for r in people]

    match data:
        case relations_v1.TasksDigestDue():
            lines = [
                {
                    "kind": t.kind,
                    "customer_id": t.customer_id,
                    "due_on": t.due_at.date().isoformat(),
                    "overdue": t.overdue,
                    "business_days_overdue": t.business_days_overdue,
                }
                for t in data.tasks
            ]
            digest: dict[str, Any] = {
                "day": data.day.isoformat(),
                "due_today": data.due_today,
                "overdue": data.overdue,
                "tasks": lines,
                "more": data.due_today + data.overdue - len(lines),
            }
            return to([data.owner], "task_digest", digest)
        case relations_v1.TaskOverdue() if data.escalated:
            escalated: dict[str, Any] = {
                "task_id": data.task_id,
                "kind": data.kind,
                "customer_id": event.subject,
                "owner": data.owner or "queue",
                "due_on": data.due_at.date().isoformat(),
                "business_days_overdue": data.business_days_overdue,
            }
            return to(everyone, "task_escalated", escalated)
        case relations_v1.AgreementFulfilmentAtRisk():
            risk: dict[str, Any] = {
                "agreement_id": data.agreement_id,
                "customer_id": event.subject,
                "period": f"{data.period_start.isoformat()} – {data.period_end.isoformat()}",
                "minimum": str(data.minimum),
                "fulfilled": str(data.fulfilled),
                "projected": str(data.projected),
                "unit": data.currency if data.measure == "spend" else "orders",
            }
            return to([data.owner], "agreement_at_risk", risk)
        case relations_v1.AgreementPeriodClosed():
            closed: dict[str, Any] = {
                "agreement_id": data.agreement_id,
                "customer_id": event.subject,
                "period": f"{data.period_start.isoformat()} – {data.period_end.isoformat()}",
                "minimum": str(data.minimum),
                "fulfilled": str(data.fulfilled),
                "unit": data.currency if data.measure == "spend" else "orders",
                "met": data.met,
            }
            return to([data.owner], "agreement_period_closed", closed)
        case relations_v1.AgreementRenewalDue():
            renewal: dict[str, Any] = {
                "agreement_id": data.agreement_id,
                "customer_id": event.subject,
                "ends_on": data.ends_on.isoformat(),
                "notice_days": data.notice_days,
            }
            return to([data.owner], "agreement_renewal_due", renewal)
    return []


def update_preferences(preferences: Preferences, event: CloudEvent[Any]) -> None:
    """What an event of the member system tells about the customer's addresses and consents;
    an erasure request forgets all of it."""
    data = event.data
    match data:
        case members_v1.CustomerRegistered():
            if preferences.registered:
                return  # the earliest registration wins
            preferences.registered = True
            preferences.name = data.name
            preferences.email = str(data.email) if data.email else None
            preferences.phone = data.phone
            preferences.birthday = data.birthday
            for channel, consent in data.consents.items():
                preferences.consents[channel] = {
                    "transactional": consent.transactional,
                    "marketing": consent.marketing,
                }
        case members_v1.CustomerProfileUpdated():
            for name in ("name", "phone", "birthday"):
                if name in data.model_fields_set:
                    setattr(preferences, name, getattr(data, name))
            if "email" in data.model_fields_set:
                preferences.email = str(data.email) if data.email else None
        case members_v1.CustomerConsentChanged():
            preferences.consents.setdefault(data.channel, {})[data.purpose] = data.granted
        case members_v1.CustomerErasureRequested():
            preferences.forget()
