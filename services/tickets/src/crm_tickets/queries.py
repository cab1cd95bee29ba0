"""The read side: the `TicketQueries` port the HTTP routes read through, the shapes it answers
(ticket summaries, agents with their load, a ticket's SLA clocks), and the reports.

The reports are aggregation pipelines the database runs over the tickets opened in a period (or
surveyed in it), and the answers shaped from the few rows they return (one per priority and
category, per category and root cause, or per week or month), never from the tickets themselves.
The pipelines are pure: the repository runs them (`sla_groups`, `root_cause_groups`,
`satisfaction_groups`).
"""

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from crm_tickets.domain.agent import Agent
from crm_tickets.domain.events import Status
from crm_tickets.domain.rules import PRIORITIES, Priority, TicketRules
from crm_tickets.domain.satisfaction import (
    DETRACTOR,
    PROMOTER,
    Interval,
    SatisfactionFigures,
    period_starts,
)
from crm_tickets.domain.ticket import TARGETS, Ticket

Document = dict[str, Any]
UNRESOLVED = "(unresolved)"
DEFAULT_REPORT_DAYS = 30


# -- what the routes read -------------------------------------------------------------------
@dataclass(frozen=True)
class TicketFilter:
    """The tickets a list shows: those matching every field given (None: any)."""

    status: Status | None = None
    priority: Priority | None = None
    queue: str | None = None
    assignee: str | None = None
    customer_id: str | None = None
    breached: bool | None = None
    flagged_for_review: bool | None = None


@dataclass(frozen=True)
class TicketSummary:
    """A line of the ticket list: no description, comment or history (not a personal-data
    read), but its SLA clocks, so a queue with its countdowns is one call."""

    id: str
    customer_id: str
    status: Status
    priority: Priority
    category: str
    queue: str
    assignee: str | None
    opened_at: datetime
    breached: bool
    flagged_for_review: bool
    first_response_at: datetime | None
    resolved_at: datetime | None
    sla: dict[str, Document]
    """As the ticket's own (`sla_clocks`): per target its due time while running, breached."""


@dataclass(frozen=True)
class AgentLoad:
    agent: Agent
    open_tickets: int


class TicketQueries(Protocol):
    """The read side the HTTP routes use."""

    async def get(self, ticket_id: str) -> Ticket | None: ...

    async def find(self, where: TicketFilter, after: str | None, limit: int) -> list[Ticket]:
        """The matching tickets by id, **without their texts**: description, comments and
        history are not read (nor opened), so a list is no personal-data read."""
        ...

    async def agent(self, agent_id: str) -> Agent | None: ...

    async def all_agents(self) -> list[Agent]: ...

    async def open_load(self, agent_ids: Sequence[str]) -> dict[str, int]: ...

    async def sla_groups(self, since: datetime, until: datetime) -> list[Document]:
        """The rows of `sla_pipeline`."""
        ...

    async def root_cause_groups(
        self, since: datetime, until: datetime
    ) -> tuple[list[Document], int]:
        """The rows of `root_cause_pipeline`, and how many tickets were opened then."""
        ...

    async def satisfaction_groups(
        self, since: datetime, until: datetime, boundaries: Sequence[datetime]
    ) -> list[Document]:
        """The rows of `satisfaction_pipeline`."""
        ...


async def agents(reader: TicketQueries) -> list[AgentLoad]:
    found = await reader.all_agents()
    loads = await reader.open_load([a.agent_id for a in found])
    return [AgentLoad(a, loads.get(a.agent_id, 0)) for a in found]


async def with_load(reader: TicketQueries, agent: Agent) -> AgentLoad:
    loads = await reader.open_load([agent.agent_id])
    return AgentLoad(agent, loads.get(agent.agent_id, 0))


def sla_clocks(ticket: Ticket, now: datetime, rules: TicketRules) -> dict[str, Document]:
    """Per target: its time, the business seconds elapsed, whether the clock runs, when it falls
    due, whether it was warned and breached."""
    clocks: dict[str, Document] = {}
    for target in TARGETS:
        state = ticket.sla[target]
        elapsed = ticket.elapsed(target, now, rules)
        running = ticket.clock_running(target)
        clocks[target] = {
            "target_s": ticket.target(target, rules),
            "elapsed_s": elapsed,
            "running": running,
            "due_at": ticket.due_at(target, now, rules, elapsed) if running else None,
            "warned": state.warned,
            "breached": state.breached,
        }
    return clocks


# -- reports --------------------------------------------------------------------------------
class ReportRangeError(ValueError):
    """A report's range that is empty, too early, or longer than the cap (HTTP 422)."""


def report_range(
    since: datetime | None, until: datetime | None, now: datetime, max_days: int
) -> tuple[datetime, datetime]:
    """[since, until): by default until now, and from 30 days before `until`; at most
    `max_days` long."""
    end = until or now
    try:
        start = since or end - timedelta(days=DEFAULT_REPORT_DAYS)
    except OverflowError as exc:  # `until` in the first days of year 1
        raise ReportRangeError("`until` is too early for a default range") from exc
    if start >= end:
        raise ReportRangeError("`since` must be before `until`")
    if end - start > timedelta(days=max_days):
        days = math.ceil((end - start) / timedelta(days=1))
        raise ReportRangeError(
            f"the range from {start.isoformat()} to {end.isoformat()} is {days} days; a "
            f"report covers at most {max_days} days: ask for several shorter ranges"
        )
    return start, end


async def sla(reader: TicketQueries, since: datetime, until: datetime) -> Document:
    """`GET /reports/sla`: breaches and mean business times of the tickets opened then."""
    report = sla_report(await reader.sla_groups(since, until))
    return {"since": since, "until": until, "times_are": "business seconds", **report}


async def root_causes(reader: TicketQueries, since: datetime, until: datetime) -> Document:
    """`GET /reports/root-causes`: the tickets opened then by category and root cause."""
    rows, tickets = await reader.root_cause_groups(since, until)
    return {"since": since, "until": until, **root_cause_report(rows, tickets)}


def opened_between(since: datetime, until: datetime) -> Document:
    """Tickets opened in [since, until) (the `opened_at` index)."""
    return {"opened_at": {"$gte": since, "$lt": until}}


def _present(field: str) -> Document:
    """1 when the field holds a value (0 included), else 0."""
    return {"$cond": [{"$eq": [{"$ifNull": [f"${field}", None]}, None]}, 0, 1]}


def sla_pipeline(since: datetime, until: datetime) -> list[Document]:
    """Per (priority, category): tickets, breaches, and the sums and counts of the business
    seconds to first response and to resolution (means are sums over counts, so groups add)."""
    return [
        {"$match": opened_between(since, until)},
        {
            "$group": {
                "_id": {"priority": "$priority", "category": "$category"},
                "tickets": {"$sum": 1},
                "breached": {"$sum": {"$cond": [{"$eq": ["$breached", True]}, 1, 0]}},
                "first_response_total": {"$sum": {"$ifNull": ["$first_response_s", 0]}},
                "first_responses": {"$sum": _present("first_response_s")},
                "resolution_total": {"$sum": {"$ifNull": ["$resolution_s", 0]}},
                "resolutions": {"$sum": _present("resolution_s")},
            }
        },
    ]


def root_cause_pipeline(since: datetime, until: datetime) -> list[Document]:
    """Per (category, root cause): tickets; a ticket without root causes counts as unresolved."""
    return [
        {"$match": opened_between(since, until)},
        {"$unwind": {"path": "$root_causes", "preserveNullAndEmptyArrays": True}},
        {
            "$group": {
                "_id": {
                    "category": "$category",
                    "cause": {"$ifNull": ["$root_causes", UNRESOLVED]},
                },
                "tickets": {"$sum": 1},
            }
        },
    ]


@dataclass(frozen=True)
class SlaFigures:
    tickets: int = 0
    breached: int = 0
    first_response_total: int = 0
    first_responses: int = 0
    resolution_total: int = 0
    resolutions: int = 0

    def __add__(self, other: "SlaFigures") -> "SlaFigures":
        return SlaFigures(
            self.tickets + other.tickets,
            self.breached + other.breached,
            self.first_response_total + other.first_response_total,
            self.first_responses + other.first_responses,
            self.resolution_total + other.resolution_total,
            self.resolutions + other.resolutions,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "tickets": self.tickets,
            "breached": self.breached,
            "breach_rate": round(self.breached / self.tickets, 4) if self.tickets else None,
            "mean_first_response_s": (
                round(self.first_response_total / self.first_responses)
                if self.first_responses
                else None
            ),
            "mean_resolution_s": (
                round(self.resolution_total / self.resolutions) if self.resolutions else None
            ),
        }


def sla_report(rows: list[Document]) -> dict[str, Any]:
    """`all`, `by_priority` (P1..P4, those with tickets) and `by_category` (sorted) from the rows
    of `sla_pipeline`."""
    groups = [
        (
            row["_id"]["priority"],
            row["_id"]["category"],
            SlaFigures(
                int(row["tickets"]),
                int(row["breached"]),
                int(row["first_response_total"]),
                int(row["first_responses"]),
                int(row["resolution_total"]),
                int(row["resolutions"]),
            ),
        )
        for row in rows
    ]
    total = sum((f for _, _, f in groups), SlaFigures())
    priorities = {p for p, _, _ in groups}
    categories = sorted({c for _, c, _ in groups})
    return {
        "all": total.summary(),
        "by_priority": {
            p: sum((f for q, _, f in groups if q == p), SlaFigures()).summary()
            for p in PRIORITIES
            if p in priorities
        },
        "by_category": {
            c: sum((f for _, d, f in groups if d == c), SlaFigures()).summary() for c in categories
        },
    }


def root_cause_report(rows: list[Document], tickets: int, top: int = 10) -> dict[str, Any]:
    """The table by category and root cause, and the `top` pairs by tickets, from the rows of
    `root_cause_pipeline`; `tickets`: how many were opened in the period."""
    table: dict[str, dict[str, int]] = {}
    for row in rows:
        key = row["_id"]
        table.setdefault(key["category"], {})[key["cause"]] = int(row["tickets"])
    ranked = sorted(
        ((n, category, cause) for category, row in table.items() for cause, n in row.items()),
        reverse=True,
    )[:top]
    return {
        "tickets": tickets,
        "by_category": {c: dict(sorted(r.items())) for c, r in sorted(table.items())},
        "top": [{"category": c, "root_cause": k, "tickets": n} for n, c, k in ranked],
    }


# -- satisfaction over time -------------------------------------------------------------------
INTERVAL_DEFAULT_DAYS: dict[Interval, int] = {"week": 84, "month": 365}
"""A satisfaction report's default range: twelve weeks, or twelve months."""


def satisfaction_range(
    since: datetime | None, until: datetime | None, interval: Interval, now: datetime, days: int
) -> tuple[datetime, datetime]:
    """As `report_range` (at most `days`), with a default `since` of twelve periods."""
    end = until or now
    try:
        start = since or end - timedelta(days=min(INTERVAL_DEFAULT_DAYS[interval], days))
    except OverflowError as exc:
        raise ReportRangeError("`until` is too early for a default range") from exc
    if start.year < 2 or end.year > 9998:  # the periods around them must be dates too
        raise ReportRangeError("`since` and `until` must fall in the years 2 to 9998")
    return report_range(start, end, now, days)


def satisfaction_pipeline(
    since: datetime, until: datetime, boundaries: Sequence[datetime]
) -> list[Document]:
    """Per period (`boundaries`, in UTC: the lower one is the row's `_id`): the surveys answered
    in [since, until), the CSAT sum and count, the NPS promoters, passives and detractors."""
    csat, nps = "$survey.csat", "$survey.nps"
    score = {"$ifNull": [nps, -1]}
    return [
        {"$match": {"survey.at": {"$gte": since, "$lt": until}}},
        {
            "$bucket": {
                "groupBy": "$survey.at",
                "boundaries": [b.astimezone(UTC) for b in boundaries],
                "default": "outside",
                "output": {
                    "responses": {"$sum": 1},
                    "csat_total": {"$sum": {"$ifNull": [csat, 0]}},
                    "csat_count": {"$sum": _present("survey.csat")},
                    "promoters": {"$sum": {"$cond": [{"$gte": [score, PROMOTER]}, 1, 0]}},
                    "detractors": {
                        "$sum": {
                            "$cond": [
                                {"$and": [{"$gte": [score, 0]}, {"$lte": [score, DETRACTOR]}]},
                                1,
                                0,
                            ]
                        }
                    },
                    "nps_count": {"$sum": _present("survey.nps")},
                },
            }
        },
    ]


def satisfaction_report(
    rows: list[Document], since: datetime, until: datetime, starts: Sequence[datetime]
) -> dict[str, Any]:
    """`all` and `periods` (each period [start, end) clipped to [since, until), every one listed,
    empty ones with `None` averages) from the rows of `satisfaction_pipeline`."""
    by_start: dict[datetime, SatisfactionFigures] = {}
    for row in rows:
        if isinstance(row["_id"], datetime):
            start = row["_id"] if row["_id"].tzinfo else row["_id"].replace(tzinfo=UTC)
            by_start[start] = SatisfactionFigures.of(row)
    periods = [
        {
            "start": max(start, since),
            "end": min(end, until),
            **by_start.get(start, SatisfactionFigures()).summary(),
        }
        for start, end in itertools.pairwise(starts)
    ]
    total = sum(by_start.values(), SatisfactionFigures())
    return {"all": total.summary(), "periods": periods}


async def satisfaction(
    reader: TicketQueries, since: datetime, until: datetime, interval: Interval, zone: ZoneInfo
) -> Document:
    """`GET /reports/satisfaction`: CSAT and NPS per week or month of the surveys answered then."""
    starts = period_starts(since, until, interval, zone)
    rows = await reader.satisfaction_groups(since, until, starts)
    return {
        "since": since,
        "until": until,
        "interval": interval,
        "time_zone": zone.key,
        **satisfaction_report(rows, since, until, starts),
    }
