"""`crm_runtime.documents` and `crm_runtime.views`: a dataclass stored field by field and read
back with its defaults; a response model read from a record's attributes."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pytest
from pydantic import BaseModel

from crm_runtime.documents import dataclass_document, dataclass_from, fields_of
from crm_runtime.views import view

pytestmark = pytest.mark.unit

AT = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)


@dataclass
class Thing:
    thing_id: str
    name: str
    tags: list[str] = field(default_factory=list)
    size: int = 0
    seen_at: datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.size})"


@dataclass(frozen=True)
class Daily:
    owner: str
    day: date
    count: int = 0

    @property
    def daily_id(self) -> str:
        return f"{self.owner}/{self.day.isoformat()}"


def test_fields_of_keeps_order_and_values_without_copying() -> None:
    thing = Thing("t1", "lamp", ["a"], 3, AT)
    fields = fields_of(thing)
    assert list(fields) == ["thing_id", "name", "tags", "size", "seen_at"]
    assert fields["tags"] is thing.tags


def test_the_id_field_is_stored_first_as_underscore_id_and_once() -> None:
    document = dataclass_document(Thing("t1", "lamp", ["a"], 3, AT), "thing_id")
    assert list(document.items()) == [
        ("_id", "t1"),
        ("name", "lamp"),
        ("tags", ["a"]),
        ("size", 3),
        ("seen_at", AT),
    ]


def test_an_id_property_is_stored_with_every_field_and_overrides_keep_their_place() -> None:
    daily = Daily("c1", date(2024, 5, 1), 2)
    document = dataclass_document(daily, "daily_id", day=daily.day.isoformat())
    assert list(document.items()) == [
        ("_id", "c1/2024-05-01"),
        ("owner", "c1"),
        ("day", "2024-05-01"),
        ("count", 2),
    ]
    back = dataclass_from(Daily, document, "daily_id", day=date.fromisoformat(document["day"]))
    assert back == daily


def test_a_round_trip_gives_the_same_record() -> None:
    thing = Thing("t1", "lamp", ["a", "b"], 3, AT)
    assert dataclass_from(Thing, dataclass_document(thing, "thing_id"), "thing_id") == thing


def test_missing_keys_take_the_defaults_and_unknown_keys_are_left_out() -> None:
    back = dataclass_from(Thing, {"_id": "t1", "name": "lamp", "other": 1}, "thing_id")
    assert back == Thing("t1", "lamp", [], 0, None)


def test_a_missing_key_without_default_fails_unless_passed() -> None:
    with pytest.raises(KeyError, match="name"):
        dataclass_from(Thing, {"_id": "t1"}, "thing_id")
    assert dataclass_from(Thing, {"_id": "t1"}, "thing_id", name="") == Thing("t1", "")


def test_a_sub_document_keeps_its_id_under_another_key() -> None:
    thing = Thing("t1", "lamp")
    document = dataclass_document(thing, "thing_id", id_key="id")
    assert document["id"] == "t1"
    assert "_id" not in document
    assert dataclass_from(Thing, document, "thing_id", id_key="id") == thing


def test_overrides_must_name_fields() -> None:
    with pytest.raises(TypeError, match="colour"):
        dataclass_document(Thing("t1", "lamp"), "thing_id", colour="red")
    with pytest.raises(TypeError, match="colour"):
        dataclass_from(Thing, {"_id": "t1", "name": "lamp"}, "thing_id", colour="red")


class ThingView(BaseModel):
    id: str
    name: str
    label: str
    size: int
    big: bool


def test_a_view_reads_fields_and_properties_and_takes_computed_values() -> None:
    thing = Thing("t1", "lamp", size=3)
    answer = view(ThingView, thing, id=thing.thing_id, big=thing.size > 2)
    assert answer == ThingView(id="t1", name="lamp", label="lamp (3)", size=3, big=True)
    assert (
        answer.model_dump_json()
        == '{"id":"t1","name":"lamp","label":"lamp (3)","size":3,"big":true}'
    )


def test_a_view_refuses_computed_values_that_are_not_fields() -> None:
    with pytest.raises(TypeError, match="colour"):
        view(ThingView, Thing("t1", "lamp"), id="t1", big=False, colour="red")
