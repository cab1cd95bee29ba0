"""Which events ask for which messages, and what events say about a customer's preferences."""

from dataclasses import replace
from typing import Any

from crm_contracts import CloudEvent
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_notify.domain.notification import Intent
from crm_notify.domain.policy import Preferences


def intents_for(event: CloudEvent[Any]) -> list[Intent]:
    return [
        replace(intent, trace=event.traceparent, origin=event.source)
        for intent in _intents_for(event)
    ]


def _intents_for(event: CloudEvent[Any]) -> list[Intent]:
    data, cause = event.data, event.id
    match data:
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
