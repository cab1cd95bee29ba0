"""The CloudEvents 1.0 envelope (structured JSON mode), generic over its data model.

`subject` is the customer id, which is also the Kafka key, so that one customer's events stay in
order on every topic.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from crm_contracts.types import Identifier

DataT = TypeVar("DataT")

MAX_EVENT_BYTES = 1_000_000
"""The largest event we accept (Kafka's default message size limit)."""


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 event in structured JSON mode."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: Identifier = Field(description="Unique per source; consumers deduplicate by it.")
    source: str = Field(min_length=1, max_length=200, description="URI-reference of the producer.")
    type: str = Field(min_length=1, max_length=100, description="e.g. `order.placed`.")
    subject: Identifier = Field(description="The customer id; also the Kafka message key.")
    time: AwareDatetime = Field(description="When it happened, RFC 3339 with a zone.")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = Field(default=None, max_length=500)
    traceparent: str | None = Field(
        default=None, max_length=55, description="W3C trace context, when tracing."
    )
    data: DataT


MAX_CLOCK_SKEW = timedelta(days=1)
"""How far ahead of our clock an inbound event's `time` may be: source clocks drift, by minutes."""


def event_key(event: "CloudEvent[Any]") -> str:
    """What identifies an event: CloudEvents makes `source` + `id` unique, not `id` alone (two
    systems may both number their events 1, 2, 3). Consumers deduplicate by it and derive the
    ids of their records from it. The source's length comes first, so no other (source, id)
    pair spells the same key."""
    return f"{len(event.source)}:{event.source}/{event.id}"


def check_not_in_the_future(event: "CloudEvent[Any]", now: datetime) -> None:
    """For events from external systems: a `time` beyond the clock skew is an error.
    (Our own services' events may carry a simulated clock in tests and demos.)"""
    if event.time > now + MAX_CLOCK_SKEW:
        raise EventDecodeError(
            f"invalid event: time: {event.time.isoformat()} is more than a day in the future"
        )


class EventDecodeError(ValueError):
    """The bytes are not a valid event of a known type: the message goes to the dead letters."""


class UnknownEventTypeError(EventDecodeError):
    """The envelope is valid but its `type` is not in the registry."""


def new_event(
    type: str,
    *,
    source: str,
    subject: str,
    data: BaseModel,
    id: str | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
) -> CloudEvent[Any]:
    """Build an event; `id` defaults to a random UUID and `time` to now (UTC)."""
    return CloudEvent[Any](
        id=id or str(uuid.uuid4()),
        source=source,
        type=type,
        subject=subject,
        time=time or datetime.now(UTC),
        traceparent=traceparent,
        data=data,
    )


def encode_event(event: CloudEvent[Any]) -> bytes:
    """Structured-mode JSON bytes, as written to Kafka."""
    return event.model_dump_json(exclude_none=True).encode()


def decode_event(raw: bytes | str) -> CloudEvent[Any]:
    """Parse and validate an event, data included, against the registry of event types.

    Raises `EventDecodeError` (or its subclass `UnknownEventTypeError`) with a readable reason.
    The same verdict, in two steps, as `decode_data(decode_envelope(raw))`.
    """
    return decode_data(decode_envelope(raw))


def decode_envelope(raw: bytes | str) -> CloudEvent[Any]:
    """Parse an event and validate its envelope only: its size, JSON, the CloudEvents attributes
    and a `type` the registry knows. Its `data` is left as parsed JSON, unchecked; pass the event
    to `decode_data` before using it.

    A consumer decides on the envelope whether it needs the data at all (a type it ignores, an
    event its inbox says it has applied) and validates the data only of the events it will apply
    (ADR 0017). Raises `EventDecodeError` (or `UnknownEventTypeError`) with a readable reason."""
    from crm_contracts.registry import EVENT_MODELS

    if len(raw) > MAX_EVENT_BYTES:
        raise EventDecodeError(f"event is {len(raw)} bytes, larger than {MAX_EVENT_BYTES}")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventDecodeError(f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise EventDecodeError("not JSON we accept: nested too deeply") from exc
    if not isinstance(document, dict):
        raise EventDecodeError("a CloudEvent must be a JSON object")
    event_type = document.get("type")
    if not isinstance(event_type, str):
        raise EventDecodeError("missing or non-string CloudEvents attribute 'type'")
    if event_type not in EVENT_MODELS:
        raise UnknownEventTypeError(f"unknown event type {_clip(event_type)!r}")
    try:
        return CloudEvent[Any].model_validate(document)
    except ValidationError as exc:
        raise EventDecodeError(_describe(exc)) from exc


def decode_data(envelope: CloudEvent[Any]) -> CloudEvent[Any]:
    """The event of `envelope` (from `decode_envelope`) with its `data` validated against the
    model of its type. Raises `EventDecodeError` naming the fields (as `data.<field>`)."""
    from crm_contracts.registry import EVENT_MODELS

    model = EVENT_MODELS[envelope.type]
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise EventDecodeError(_describe(exc, within="data")) from exc
    return envelope.model_copy(update={"data": data})


def _clip(text: str, limit: int = 120) -> str:
    """Error texts echo what a producer sent: never more than `limit` characters of it."""
    return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit})"


def _describe(exc: ValidationError, within: str = "") -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = _clip(".".join(str(p) for p in (within, *error["loc"]) if p != "")) or "event"
        parts.append(f"{where}: {_clip(error['msg'], 300)}")
    more = exc.error_count() - len(parts)
    return "invalid event: " + "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
