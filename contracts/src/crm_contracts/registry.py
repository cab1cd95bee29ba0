"""Event type -> payload model and topic: how a consumer knows what an event's data must be."""

from pydantic import BaseModel

from crm_contracts.archive import v1 as archive_v1
from crm_contracts.callcenter import v1 as callcenter_v1
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.notify import v1 as notify_v1
from crm_contracts.orders import v1 as orders_v1
from crm_contracts.privacy import v1 as privacy_v1
from crm_contracts.relations import v1 as relations_v1
from crm_contracts.tickets import v1 as tickets_v1
from crm_contracts.topics import ALL_TOPICS

EVENT_MODELS: dict[str, type[BaseModel]] = {
    **orders_v1.EVENTS,
    **members_v1.EVENTS,
    **callcenter_v1.EVENTS,
    **archive_v1.EVENTS,
    **tickets_v1.EVENTS,
    **loyalty_v1.EVENTS,
    **notify_v1.EVENTS,
    **relations_v1.EVENTS,
    **privacy_v1.EVENTS,
}


def event_model(event_type: str) -> type[BaseModel]:
    return EVENT_MODELS[event_type]


def event_topic(event_type: str) -> str:
    """The topic an event type travels on."""
    for candidate in ALL_TOPICS:
        if event_type in candidate.event_types:
            return candidate.name
    raise KeyError(f"no topic carries {event_type!r}")
