"""ADR 0028: a process may read only some of its service's topics (`CRM_<SERVICE>_TOPICS`), so
that replicas can share them out and each run at a weight of its own. A topic the service does not
read stops the process at start, in one line naming the setting and the topics it may name."""

import json
from typing import ClassVar

import pytest
from pydantic_settings import SettingsConfigDict

from crm_runtime.settings import ServiceSettings, UnknownTopicsError

pytestmark = pytest.mark.unit


class NotifyLike(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_NOTIFY_", extra="ignore")

    service: ClassVar[str] = "notify"


def test_a_process_reads_every_topic_of_its_service_unless_told() -> None:
    assert NotifyLike().consumed_topics() == [
        "members.v1",
        "archive.v1",
        "tickets.v1",
        "loyalty.v1",
        "relations.v1",
    ]


def test_topics_narrow_what_the_process_reads_in_the_registrys_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_NOTIFY_TOPICS", json.dumps(["tickets.v1", "members.v1"]))
    assert NotifyLike().consumed_topics() == ["members.v1", "tickets.v1"]


@pytest.mark.parametrize("named", [["orders.v1"], ["tickets.v1", "tickets"]])
def test_a_topic_the_service_does_not_read_stops_it_at_start_in_one_line(
    monkeypatch: pytest.MonkeyPatch, named: list[str]
) -> None:
    monkeypatch.setenv("CRM_NOTIFY_TOPICS", json.dumps(named))
    with pytest.raises(UnknownTopicsError) as refused:
        NotifyLike()
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"CRM_NOTIFY_TOPICS names {named[-1]!r}: crm-notify reads only ")
    assert message.endswith("members.v1, archive.v1, tickets.v1, loyalty.v1, relations.v1")
