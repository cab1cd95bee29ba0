"""The AsyncAPI document of a service: the topics it consumes and the topics it publishes.

FastStream documents the service's subscriber, but a service publishes through the outbox relay
(straight to the broker's aiokafka producer), which FastStream cannot see. `declare_publications`
therefore registers one FastStream publisher per published topic, for the document only (nothing
publishes through them), with the schema of the topic's events: the CloudEvents envelope whose
`type` is the event type and whose `data` is that type's payload model. `service_document` then
builds the document, gives each consumed topic the schema of its events too (the batch subscriber
decodes records itself, so FastStream knows no payload type for it), and sorts it so that it reads
the same from run to run. Topics, producers and event types come from the contracts' topic
registry.

`/asyncapi.json` serves this document; `docs/asyncapi/generate.py` writes each service's to
`docs/asyncapi/<service>.yaml`.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Union, cast

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import Field, TypeAdapter, create_model

from crm_contracts import CloudEvent
from crm_contracts.registry import event_model
from crm_contracts.topics import DLQS, INBOUND, OUTBOUND, Topic, dlq_topic_name, topic
from crm_runtime import dlq

SCHEMAS = "#/components/schemas/"
ENVELOPE_NOTE = (
    "Every message on a domain topic is a CloudEvents 1.0 event in structured JSON mode whose "
    "`data` is the payload of its `type`; the Kafka key is the customer id (the event's "
    "`subject`). Delivery is at least once: consumers deduplicate by `id`. A dead-letter topic "
    "carries the failed record byte for byte, with the reason in `x-dlq-*` headers."
)


@dataclass(frozen=True)
class Publication:
    """A topic a service publishes to, and the event types it publishes there (none: raw
    records, as on a dead-letter topic)."""

    topic: str
    event_types: tuple[str, ...] = ()
    description: str = ""


def publications_of(service: str) -> tuple[Publication, ...]:
    """What `service` publishes, from the topic registry: every topic it produces (its own,
    privacy.v1's erasure confirmations, and the inbound topic the archive shares with the member
    system) and its dead-letter topic."""
    produced = [t for t in INBOUND + OUTBOUND if service in _producers(t)]
    try:
        dead_letters = topic(dlq_topic_name(service))
    except KeyError:
        raise ValueError(f"the topic registry has no dead-letter topic for {service!r}") from None
    return tuple(_publication(t) for t in (*produced, dead_letters))


def _producers(candidate: Topic) -> set[str]:
    return {name.strip() for name in candidate.producer.split(",")}


def _publication(source: Topic) -> Publication:
    return Publication(source.name, source.event_types, source.description)


@cache
def event_envelope(event_type: str) -> type[CloudEvent[Any]]:
    """The CloudEvent model of one event type: `type` is the constant, `data` its payload."""
    payload = event_model(event_type)
    name = "".join(word.capitalize() for word in event_type.replace(".", "_").split("_"))
    summary = (payload.__doc__ or "").strip().split("\n\n")[0]
    constant = cast(Any, Literal)[event_type]
    model = create_model(
        f"{name}Event",
        __base__=CloudEvent[payload],  # type: ignore[valid-type]
        __doc__=f"`{event_type}`" + (f": {' '.join(summary.split())}" if summary else ""),
        type=(constant, Field(description="The event type.")),
    )
    return cast("type[CloudEvent[Any]]", model)


def events_schema(event_types: Sequence[str]) -> Any:
    """The type a message on a topic with these events validates against (`bytes`: raw)."""
    envelopes = tuple(event_envelope(t) for t in event_types)
    if not envelopes:
        return bytes
    if len(envelopes) == 1:
        return envelopes[0]
    return Union[envelopes]  # noqa: UP007 (a runtime union of a tuple of types)


def declare_publications(
    broker: KafkaBroker, service: str, publications: Iterable[Publication]
) -> None:
    """Register a documentation-only publisher per publication (idempotent)."""
    declared = {publisher.specification.name for publisher in broker.publishers}
    for publication in publications:
        title = f"{service}-outbound:{publication.topic}"
        if title in declared:
            continue
        broker.publisher(
            publication.topic,
            title=title,
            description=publication.description or None,
            schema=events_schema(publication.event_types),
        )
        declared.add(title)


class ServiceDocument:
    """A finished AsyncAPI document; a FastStream `Specification`, so it renders as HTML too."""

    def __init__(self, content: dict[str, Any]) -> None:
        self.content = content

    @property
    def title(self) -> str:
        return str(self.content["info"]["title"])

    def to_jsonable(self) -> dict[str, Any]:
        return self.content

    def to_json(self) -> str:
        return json.dumps(self.content, ensure_ascii=False)

    def to_yaml(self) -> str:
        import yaml  # PyYAML: only the docs generator needs it

        return str(yaml.safe_dump(self.content, sort_keys=False, allow_unicode=True, width=100))


def service_document(
    broker: KafkaBroker, *, title: str, version: str, description: str = ""
) -> ServiceDocument:
    """The AsyncAPI 3.0 document of `broker`'s subscriber and (declared) publishers."""
    specification = AsyncAPI(
        broker,
        title=title,
        version=version,
        description="\n\n".join(part for part in (description, ENVELOPE_NOTE) if part),
        schema_version="3.0.0",
    )
    content: dict[str, Any] = specification.to_specification().to_jsonable()
    _describe_consumed(content)
    _describe_dead_letters(content)
    return ServiceDocument(_sorted(content))


def _describe_consumed(content: dict[str, Any]) -> None:
    """Each consumed topic's messages get the schema of its events; its channel the topic's
    description (the subscriber's own moves to the operation)."""
    components = content.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    replaced: set[str] = set()
    for operation in content.get("operations", {}).values():
        if operation.get("action") != "receive":
            continue
        channel_key = _key(operation["channel"]["$ref"])
        channel = content["channels"][channel_key]
        try:
            consumed = topic(channel["address"])
        except KeyError:
            continue
        if not consumed.event_types:
            continue
        if channel.get("description"):
            operation["description"] = channel["description"]
        channel["description"] = consumed.description
        payload = _schema_into(schemas, consumed.event_types, f"{channel_key}:Message:Payload")
        for reference in channel.get("messages", {}).values():
            message = components["messages"][_key(reference["$ref"])]
            if "$ref" in message.get("payload", {}):
                replaced.add(_key(message["payload"]["$ref"]))
            message["payload"] = payload
    referenced = set(_references(content))
    for name in replaced:
        if SCHEMAS + name not in referenced:
            schemas.pop(name, None)


def _schema_into(schemas: dict[str, Any], event_types: Sequence[str], name: str) -> dict[str, Any]:
    """Add the schema of these events (and the models it uses) to `schemas`; the payload."""
    schema = TypeAdapter(events_schema(event_types)).json_schema(ref_template=SCHEMAS + "{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    if len(event_types) == 1:
        model_name = event_envelope(event_types[0]).__name__
        definitions[model_name] = schema
        payload = {"$ref": SCHEMAS + model_name}
    else:
        definitions[name] = {**schema, "title": name}
        payload = {"$ref": SCHEMAS + name}
    for key, definition in definitions.items():
        if schemas.setdefault(key, definition) != definition:
            raise ValueError(f"two different schemas named {key!r} in one document")
    return payload


def _describe_dead_letters(content: dict[str, Any]) -> None:
    """A dead-letter message says which headers carry the reason."""
    dlq_names = {t.name for t in DLQS}
    messages = content.get("components", {}).get("messages", {})
    for channel in content.get("channels", {}).values():
        if channel.get("address") not in dlq_names:
            continue
        for reference in channel.get("messages", {}).values():
            messages[_key(reference["$ref"])]["headers"] = {
                "type": "object",
                "properties": {
                    name: {"type": "string"} for name in (*dlq.HEADERS, *dlq.OPTIONAL_HEADERS)
                },
                "required": list(dlq.HEADERS),
            }


def _key(reference: str) -> str:
    """The last key of a local JSON pointer (`#/channels/<key>`)."""
    return reference.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")


def _references(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _sorted(content: dict[str, Any]) -> dict[str, Any]:
    """Channels, operations and components by name: FastStream keeps publishers in a set."""
    for section in ("channels", "operations"):
        if section in content:
            content[section] = dict(sorted(content[section].items()))
    components = content.get("components", {})
    for section in list(components):
        components[section] = dict(sorted(components[section].items()))
    return content
