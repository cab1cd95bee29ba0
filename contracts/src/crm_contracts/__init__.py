"""Message contracts of the CRM suite: the only thing services share about messages."""

from crm_contracts.envelope import (
    CloudEvent,
    EventDecodeError,
    UnknownEventTypeError,
    decode_data,
    decode_envelope,
    decode_event,
    encode_event,
    event_key,
    new_event,
)
from crm_contracts.registry import EVENT_MODELS, event_model, event_topic

__all__ = [
    "EVENT_MODELS",
    "CloudEvent",
    "EventDecodeError",
    "UnknownEventTypeError",
    "decode_data",
    "decode_envelope",
    "decode_event",
    "encode_event",
    "event_key",
    "event_model",
    "event_topic",
    "new_event",
]
