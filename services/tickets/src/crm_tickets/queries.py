"""The read side of the reports: aggregation pipelines the database runs over the tickets opened
in a period, and the answers shaped from the few rows they return (one per priority and category,
or per category and root cause), never from the tickets themselves. Pure: the repository runs the
pipelines (`MongoTicketRepository.sla_groups`, `.root_cause_groups`)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_tickets.domain.rules import PRIORITIES

Document = dict[str, Any]
UNRESOLVED = "(unresolved)"


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
