"""`crm send` and `crm replay`: check each line, send the valid ones keyed by subject."""

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from crm_cli.connection import admin_client, producer_client
from crm_cli.errors import EXIT_BROKER, CliError
from crm_cli.events import Line

PENDING_MAX = 1000
"""Sends in flight before waiting for their acknowledgements (bounds memory on large files)."""


@dataclass
class Report:
    sent: Counter[str] = field(default_factory=Counter)
    """Acknowledged events per topic."""
    invalid: list[Line] = field(default_factory=list)
    failed: list[tuple[Line, str]] = field(default_factory=list)
    forced: int = 0
    """Invalid lines sent anyway (`--force`)."""
    seconds: float = 0.0

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def ok(self) -> bool:
        return not self.invalid and not self.failed


class Pacer:
    """At most `rate` events per second, evenly spaced (no catching up in bursts after a stall
    beyond one second's worth)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = time.monotonic()

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        self.next_at = max(self.next_at, now - 1.0)
        if self.next_at > now:
            await asyncio.sleep(self.next_at - now)
        self.next_at += self.interval


async def publish(
    options: dict[str, Any],
    lines: Iterable[Line],
    *,
    force: bool = False,
    rate: float | None = None,
    topic: str | None = None,
    on_line: Callable[[Line], None] = lambda line: None,
    on_invalid: Callable[[Line], None] = lambda line: None,
) -> Report:
    """Send the valid lines (and with `force` the invalid ones that have a topic); `topic` is
    the override every line goes to, which must exist.

    `on_line` is called for every line once it is dealt with (for a progress bar), `on_invalid`
    for every invalid one (to report it as it is found).
    """
    report = Report()
    started = time.monotonic()
    async with admin_client(options) as admin:
        existing = set(await admin.list_topics())
    if topic is not None and topic not in existing:
        raise CliError(f"topic {topic} does not exist on the broker", EXIT_BROKER)
    pacer = Pacer(rate)
    # Paced: settle about five times a second, so the progress follows the acknowledgements.
    in_flight = PENDING_MAX if not rate else max(1, min(PENDING_MAX, int(rate / 5)))
    async with producer_client(options) as producer:
        pending: list[tuple[Line, asyncio.Future[Any]]] = []
        for line in lines:
            if not line.valid:
                report.invalid.append(line)
                on_invalid(line)
                if not force:
                    on_line(line)
                    continue
            if line.topic is None:
                report.failed.append((line, "no topic: the event type is unknown (use --topic)"))
                on_line(line)
                continue
            if line.topic not in existing:
                report.failed.append((line, f"topic {line.topic} does not exist on the broker"))
                on_line(line)
                continue
            await pacer.wait()
            try:
                pending.append((line, await _send(producer, line)))
            except KafkaError as exc:  # refused before sending, e.g. too large
                report.failed.append((line, str(exc) or type(exc).__name__))
                on_line(line)
                continue
            if not line.valid:
                report.forced += 1
            if len(pending) >= in_flight:
                await _settle(pending, report, on_line)
        await _settle(pending, report, on_line)
    report.seconds = time.monotonic() - started
    return report


async def _send(producer: AIOKafkaProducer, line: Line) -> asyncio.Future[Any]:
    assert line.topic is not None
    future: asyncio.Future[Any] = await producer.send(line.topic, line.value, key=line.key)
    return future


async def _settle(
    pending: list[tuple[Line, asyncio.Future[Any]]],
    report: Report,
    on_line: Callable[[Line], None],
) -> None:
    """Wait for the acknowledgements of what is in flight."""
    for line, future in pending:
        try:
            await future
        except KafkaError as exc:
            report.failed.append((line, str(exc) or type(exc).__name__))
        else:
            assert line.topic is not None
            report.sent[line.topic] += 1
        on_line(line)
    pending.clear()
