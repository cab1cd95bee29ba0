"""The CLI against the real broker: topics, send, replay, dead letters listed and re-driven once,
the archive rebuilt."""

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from stackutil import ServiceProcess, Stack, collect, eventually, free_port, order_placed, send
from typer.testing import CliRunner

from crm_cli.main import app

pytestmark = pytest.mark.integration
runner = CliRunner()


def crm(stack: Stack, *args: str) -> Any:
    return runner.invoke(app, [*args, "--bootstrap", stack.bootstrap])


def tag() -> str:
    return uuid.uuid4().hex[:10]


def order_line(customer: str, order_id: str, amount: str = "10.00") -> str:
    return order_placed(customer, order_id, amount, event_id=f"evt-{order_id}").decode()


def headers_of(record: Any) -> dict[str, bytes]:
    return dict(record.headers or ())


def test_topics_lists_the_registry_against_the_broker(stack: Stack) -> None:
    result = crm(stack, "topics")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0].split() == ["topic", "declared", "broker", "status"]
    assert "orders.v1         12 × forever  12 × forever  ok" in rows
    assert "members.v1        12 × 30d      12 × 30d      ok" in rows
    assert "archive.dlq.v1    3 × 14d       3 × 14d       ok" in rows
    assert len(rows) == 15  # the header and the 14 topics of the registry


async def drop_topic_and_change_retention(stack: Stack, drop: str, change: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([drop])
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, change, {"retention.ms": "60000"})]
        )
        for _ in range(100):
            if drop not in await admin.list_topics():
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def test_topics_create_makes_the_missing_ones_and_sets_retention(stack: Stack) -> None:
    if stack.kafka_pid is None:
        pytest.skip("deletes a topic: only on a broker this session started")
    asyncio.run(drop_topic_and_change_retention(stack, "notify.dlq.v1", "tickets.dlq.v1"))

    def changed() -> Any:  # the broker applies the deletion and the new retention shortly after
        result = crm(stack, "topics")
        return result if result.exit_code == 1 and "60000ms" in result.stdout else None

    before = eventually(changed, timeout=10)
    assert "notify.dlq.v1     3 × 14d       -             MISSING" in before.stdout.splitlines()
    assert "tickets.dlq.v1    3 × 14d       3 × 60000ms   retention differs" in before.stdout
    assert before.stderr == "1 missing: `crm topics --create` creates them\n"

    created = crm(stack, "topics", "--create")
    assert created.exit_code == 0, created.output
    assert "notify.dlq.v1" in created.stdout
    status = {row.split()[0]: row.rsplit("  ", 1)[1] for row in created.stdout.splitlines()[1:]}
    assert status["notify.dlq.v1"] == "created"
    assert status["tickets.dlq.v1"] == "retention set"
    assert eventually(lambda: crm(stack, "topics").exit_code == 0, timeout=10)


def test_a_broker_that_is_not_there_is_one_line_and_exit_3() -> None:
    result = runner.invoke(app, ["topics", "--bootstrap", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == 3
    assert result.stderr.startswith("error: cannot reach Kafka at 127.0.0.1:")
    assert result.stderr.count("\n") == 1


def test_send_sends_the_valid_lines_keyed_by_subject_and_reports_the_bad_one(
    stack: Stack, tmp_path: Path
) -> None:
    run = tag()
    good = [order_line(f"{run}-c{n}", f"{run}-o{n}") for n in range(3)]
    bad = order_line(f"{run}-c9", f"{run}-o9", amount="-3")
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([good[0], good[1], bad, "", good[2]]) + "\n")

    result = crm(stack, "send", str(path))

    assert result.exit_code == 1
    assert result.stderr.startswith("line 3: invalid event: data.amount: ")
    assert result.stdout.startswith("sent 3 event(s) (orders.v1: 3) in ")
    assert result.stdout.rstrip().endswith("1 invalid (not sent), 0 failed")
    received = asyncio.run(
        collect(
            stack.bootstrap,
            "orders.v1",
            lambda r: r.key is not None and r.key.decode().startswith(f"{run}-"),
            until=lambda kept: len(kept) >= 3,
            timeout=10,
        )
    )
    assert sorted((r.key, r.value) for r in received) == sorted(
        (f"{run}-c{n}".encode(), good[n].encode()) for n in range(3)
    )


def test_replay_paces_and_reports_the_count(stack: Stack, tmp_path: Path) -> None:
    run = tag()
    path = tmp_path / "replay.jsonl"
    path.write_text("".join(order_line(f"{run}-c{n % 4}", f"{run}-o{n}") + "\n" for n in range(20)))
    started = time.monotonic()
    result = crm(stack, "replay", str(path), "--rate", "40")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("replayed 20 event(s) (orders.v1: 20) in ")
    assert "0 invalid (not sent), 0 failed" in result.stdout
    assert "20/20" in result.stderr  # the progress bar
    assert elapsed >= 19 / 40


def test_a_dead_letter_of_the_archive_is_listed_and_redriven_once(stack: Stack) -> None:
    customer = f"dl-{tag()}"
    bad = order_placed(customer, f"{customer}-o1", "-1")
    archive = ServiceProcess.isolated("archive", stack, sweeps_enabled="false").start()
    try:
        send(stack, "orders.v1", (customer, bad))

        def listed() -> dict[str, Any] | None:
            result = crm(stack, "dlq", "list", "archive", "--json")
            assert result.exit_code == 0, result.output
            mine = [json.loads(line) for line in result.stdout.splitlines() if customer in line]
            return mine[0] if mine else None

        letter = eventually(listed, timeout=30)
    finally:
        archive.stop()  # the fix: nobody dead-letters the re-driven order again
    assert letter["source_topic"] == "orders.v1"
    assert letter["event_type"] == "order.placed"
    assert letter["reason"].startswith("invalid event: data.amount")
    text = crm(stack, "dlq", "list", "archive", "--limit", "50")
    assert any(
        line.endswith(letter["reason"]) and f"orders.v1/{letter['source_partition']}@" in line
        for line in text.stdout.splitlines()
    ), text.output

    dry = crm(stack, "dlq", "redrive", "archive", "--source-topic", "orders.v1", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert any(
        line.startswith("would redrive: ") and letter["event_id"] in line
        for line in dry.stdout.splitlines()
    )
    first = crm(stack, "dlq", "redrive", "archive", "--source-topic", "orders.v1")
    assert first.exit_code == 0, first.output
    assert letter["event_id"] in first.stdout
    second = crm(stack, "dlq", "redrive", "archive", "--source-topic", "orders.v1")
    assert second.exit_code == 0, second.output
    assert second.stdout == ""
    assert second.stderr.startswith("0 redriven;")

    redriven = asyncio.run(
        collect(
            stack.bootstrap,
            "orders.v1",
            lambda r: r.key == customer.encode() and "x-redriven-from" in headers_of(r),
            until=lambda kept: len(kept) > 1,
            timeout=4,
        )
    )
    assert len(redriven) == 1
    assert redriven[0].value == bad
    assert redriven[0].partition == letter["source_partition"]
    assert headers_of(redriven[0])["x-redriven-from"] == str(letter["dlq_offset"]).encode()


async def dead_letters(stack: Stack, key: str, reasons: list[str]) -> None:
    """Dead letters as the runtime writes them, all on one DLQ partition (one key)."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        for n, reason in enumerate(reasons):
            headers = {
                "x-dlq-reason": reason,
                "x-dlq-exception": "EventDecodeError",
                "x-dlq-source-topic": "callcenter.v1",
                "x-dlq-source-partition": "0",
                "x-dlq-source-offset": str(n),
                "x-dlq-consumer-group": "archive",
                "x-dlq-service": "archive",
                "x-dlq-time": datetime.now(UTC).isoformat(),
            }
            await producer.send_and_wait(
                "archive.dlq.v1",
                f"value-{key}-{n}".encode(),
                key=key.encode(),
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
    finally:
        await producer.stop()


def test_letters_the_filters_leave_are_redriven_later_and_the_others_not_again(
    stack: Stack,
) -> None:
    run = tag()
    asyncio.run(dead_letters(stack, run, [f"{run} alpha", f"{run} beta", f"{run} alpha"]))
    alpha = crm(stack, "dlq", "redrive", "archive", "--reason-contains", f"{run} ALPHA")
    assert alpha.exit_code == 0, alpha.output
    assert alpha.stdout.count(f"{run} alpha") == 2
    again = crm(stack, "dlq", "redrive", "archive", "--reason-contains", f"{run} alpha")
    assert again.stdout == ""
    # the first alpha is behind the group's mark (on beta); the second is in the mark's metadata
    assert again.stderr.startswith("0 redriven; 1 re-driven before, ")
    beta = crm(stack, "dlq", "redrive", "archive", "--reason-contains", run)
    assert beta.stdout.count(f"{run} beta") == 1
    assert beta.stdout.count(run) == 1

    sent = asyncio.run(
        collect(
            stack.bootstrap,
            "callcenter.v1",
            lambda r: r.key == run.encode(),
            until=lambda kept: len(kept) > 3,
            timeout=4,
        )
    )
    assert sorted(r.value for r in sent) == [f"value-{run}-{n}".encode() for n in range(3)]
    assert all(r.partition == 0 for r in sent)


def test_the_archive_is_rebuilt_by_its_own_entry_point(stack: Stack) -> None:
    archive = ServiceProcess.isolated("archive", stack)
    database = f"crm_archive_rebuild_{tag()}"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("crm")), "rebuild", "archive", "--database", database],
        env={**archive.full_env(), "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"rebuilt {database}: ")
