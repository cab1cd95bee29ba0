"""The CLI without a broker: checking lines, formatting, argument errors."""

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crm_cli import dlq, events, rebuild, topics
from crm_cli.main import app
from crm_contracts.topics import ALL_TOPICS

pytestmark = pytest.mark.unit
runner = CliRunner()


def order(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "shop",
        "type": "order.placed",
        "subject": "c1",
        "time": "2025-11-22T10:00:00+08:00",
        "data": {"order_id": "o-1", "amount": "129.90", "currency": "CNY"},
    }
    event.update(changes)
    return event


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode() + b"\n"


# -- checking lines --------------------------------------------------------------------------
def test_a_valid_order_goes_to_orders_keyed_by_its_subject() -> None:
    line = events.check_line(1, raw(order()))
    assert line.valid
    assert (line.topic, line.key, line.event_type, line.event_id) == (
        "orders.v1",
        b"c1",
        "order.placed",
        "evt-1",
    )
    assert line.value == raw(order()).strip()  # sent byte for byte, without the newline


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "a CloudEvent must be a JSON object"),
        (raw(order(type="order.teleported")), "unknown event type 'order.teleported'"),
        (raw(order(data={"order_id": "o-1", "amount": "-1", "currency": "CNY"})), "data.amount"),
        (raw(order(time="2025-11-22T10:00:00")), "time"),
        (raw(order(subject="")), "subject"),
    ],
)
def test_invalid_lines_say_why(value: bytes, reason: str) -> None:
    line = events.check_line(7, value)
    assert not line.valid
    assert line.number == 7
    assert reason in line.reason


def test_an_invalid_line_keeps_what_can_be_read_of_it() -> None:
    line = events.check_line(1, raw(order(data={"amount": "x"})))
    assert (line.topic, line.key, line.event_id) == ("orders.v1", b"c1", "evt-1")


def test_inbound_events_over_a_day_ahead_are_refused_as_the_services_would() -> None:
    now = datetime(2025, 11, 22, tzinfo=UTC)
    ahead = (now + timedelta(days=2)).isoformat()
    assert "future" in events.check_line(1, raw(order(time=ahead)), now=now).reason
    soon = (now + timedelta(hours=2)).isoformat()
    assert events.check_line(1, raw(order(time=soon)), now=now).valid


def test_a_topic_override_must_carry_the_type_when_it_is_a_suite_topic() -> None:
    line = events.check_line(1, raw(order()), topic="members.v1")
    assert line.reason == "event type 'order.placed' travels on orders.v1, not members.v1"
    elsewhere = events.check_line(1, raw(order()), topic="scratch.orders")
    assert elsewhere.valid
    assert elsewhere.topic == "scratch.orders"


def test_blank_lines_are_skipped_and_numbers_are_the_file_s(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(raw(order()) + b"\n  \n" + b"oops\n" + raw(order(id="evt-2")))
    lines = list(events.read_lines(path))
    assert [(line.number, line.valid) for line in lines] == [(1, True), (4, False), (5, True)]
    assert events.count_lines(path) == 3


# -- command line errors: one line and an exit code, no traceback ----------------------------
@pytest.mark.parametrize("command", ["send", "replay"])
def test_a_missing_file_is_one_line_and_exit_2(command: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [command, str(tmp_path / "nope.jsonl"), "-b", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert result.stderr == f"error: no such file: {tmp_path / 'nope.jsonl'}\n"
    assert "Traceback" not in result.output


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["send", str(tmp_path)])
    assert result.exit_code == 2
    assert "is a directory" in result.stderr


def test_rate_must_be_positive(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(raw(order()))
    result = runner.invoke(app, ["replay", str(path), "--rate", "0"])
    assert result.exit_code == 2
    assert result.stderr == "error: --rate must be more than 0 events/s\n"


@pytest.mark.parametrize("args", [["dlq", "list", "billing"], ["dlq", "redrive", "billing"]])
def test_an_unknown_service_is_named_with_the_known_ones(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: unknown service 'billing' (one of: archive, tickets, loyalty, notify, relations)\n"
    )


@pytest.mark.parametrize("service", ["tickets", "loyalty", "notify"])
def test_only_the_archive_can_be_rebuilt(service: str) -> None:
    result = runner.invoke(app, ["rebuild", service])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {service} cannot be rebuilt from the topics")
    assert result.stderr.endswith("supported: archive\n")


def test_the_archive_rebuild_runs_its_own_entry_point() -> None:
    found = rebuild.rebuilder("archive")
    args = rebuild.command(found, database=None, drop=True, at="2026-01-01T00:00Z")
    assert args == [
        sys.executable,
        "-m",
        "crm_archive.rebuild",
        "--database",
        "crm_archive_rebuild",
        "--drop",
        "--at",
        "2026-01-01T00:00Z",
    ]
    env = rebuild.environment("kafka-1:9092", "mongodb://m/")
    assert (env["KAFKA_BOOTSTRAP_SERVERS"], env["MONGODB_URL"]) == ("kafka-1:9092", "mongodb://m/")


def test_rebuild_passes_the_child_s_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_run(args: list[str], env: dict[str, str]) -> int:
        seen.append(args)
        return 4

    monkeypatch.setattr(rebuild, "run", fake_run)
    result = runner.invoke(app, ["rebuild", "archive", "--database", "x"])
    assert result.exit_code == 4
    assert seen[0][-2:] == ["--database", "x"]
    assert result.stderr == "error: crm_archive.rebuild exited with code 4\n"


def test_bad_kafka_security_settings_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "CARRIER_PIGEON")
    result = runner.invoke(app, ["topics"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid Kafka setting in the environment: ")
    assert result.stderr.count("\n") == 1


# -- dead letters: formatting and progress ---------------------------------------------------
def letter(**headers: str) -> dlq.DeadLetter:
    return dlq.DeadLetter(
        "archive.dlq.v1",
        1,
        42,
        b"c1",
        raw(order(data={"amount": "-1"})).strip(),
        {
            "x-dlq-reason": "invalid event: data.amount:\n bad",
            "x-dlq-source-topic": "orders.v1",
            "x-dlq-source-partition": "3",
            "x-dlq-source-offset": "17",
            "x-dlq-time": "2026-01-02T03:04:05+00:00",
            "x-dlq-service": "archive",
            **headers,
        },
    )


def test_a_dead_letter_line_has_time_source_event_and_reason() -> None:
    assert letter().line() == (
        "2026-01-02T03:04:05+00:00  orders.v1/3@17  order.placed evt-1  "
        "invalid event: data.amount: bad"
    )
    undecodable = dlq.DeadLetter("archive.dlq.v1", 0, 1, None, b"\xff", {})
    assert undecodable.line() == "-  (no source)  ? ?  "


def test_a_dead_letter_as_json() -> None:
    document = letter().as_json()
    assert document["source_topic"] == "orders.v1"
    assert (document["source_partition"], document["source_offset"]) == (3, 17)
    assert (document["event_type"], document["event_id"], document["key"]) == (
        "order.placed",
        "evt-1",
        "c1",
    )
    assert (document["dlq_partition"], document["dlq_offset"]) == (1, 42)
    assert json.loads(dlq.letters_json([letter(), letter()]).splitlines()[1]) == document


def test_filters() -> None:
    assert dlq.Filters().match(letter())
    assert dlq.Filters(reason_contains="DATA.AMOUNT").match(letter())
    assert not dlq.Filters(reason_contains="currency").match(letter())
    assert dlq.Filters(source_topic="orders.v1").match(letter())
    assert not dlq.Filters(source_topic="members.v1").match(letter())


def test_redrive_progress_metadata_round_trips() -> None:
    assert dlq.compress([3, 4, 5, 9, 11, 12]) == "3-5,9,11-12"
    assert dlq.parse_metadata("crm-redrive:3-5,9,11-12") == {3, 4, 5, 9, 11, 12}
    assert dlq.parse_metadata("") == set()
    assert dlq.parse_metadata("someone else's") == set()
    assert dlq.parse_metadata("crm-redrive:x-y") == set()
    progress = dlq.Progress(5, {2, 6, 7, 9})
    assert progress.metadata() == "crm-redrive:6-7,9"


def test_redriven_letters_go_back_to_their_partition_when_it_exists() -> None:
    assert dlq._partition(letter(), {0, 1, 2, 3}) == 3
    assert dlq._partition(letter(), {0, 1}) is None
    assert dlq._partition(letter(**{"x-dlq-source-partition": "x"}), {0, 1, 2, 3}) is None


# -- topics ----------------------------------------------------------------------------------
def test_retention_text() -> None:
    assert [topics.retention_text(ms) for ms in (None, -1, 30 * 86_400_000, 7_200_000, 5)] == [
        "-",
        "forever",
        "30d",
        "2h",
        "5ms",
    ]


def test_topic_rows_flag_missing_and_different_topics() -> None:
    orders, members, *_ = ALL_TOPICS
    states = [
        topics.TopicState(orders, 12, -1),
        topics.TopicState(members),
        topics.TopicState(members, 6, -1),
        topics.TopicState(members, created=True),
    ]
    assert [row[3] for row in topics.table_rows(states)] == [
        "ok",
        "MISSING",
        "partitions 6 != 12; retention differs",
        "created",
    ]
    assert topics.table_rows(states)[0][1:3] == ("12 × forever", "12 × forever")


def test_cut_and_unreadable_letters_are_passed_over_by_a_redrive() -> None:
    """A cut letter holds only a prefix, an unreadable batch's none: re-driving them would send
    a broken event. Each says where the whole is."""
    cut = letter(**{"x-dlq-cut": "key 2 bytes, value 1048000 bytes; kept ..."})
    assert "cut to fit" in dlq._unsendable(cut, {"orders.v1"})
    unreadable = letter(**{"x-dlq-last-offset": "20"})
    assert "offsets 17..20" in dlq._unsendable(unreadable, {"orders.v1"})
    assert dlq._unsendable(letter(), {"orders.v1"}) == ""
    assert cut.as_json()["cut"].startswith("key 2 bytes")
