"""The reports are computed by the database: the repository runs aggregation pipelines and never
reads the tickets one by one; the answers built from the grouped rows have the figures the former
loops over every ticket computed. And a report's range is capped."""

from datetime import UTC, datetime
from typing import Any

import pytest

from crm_tickets import queries
from crm_tickets.adapters.mongo import MongoTicketRepository
from crm_tickets.settings import TicketsSettings

pytestmark = pytest.mark.unit


def test_a_report_covers_at_most_366_days_by_default() -> None:
    assert TicketsSettings().report_max_days == 366


class AggregatingOnly:
    """A collection that answers aggregation pipelines (with given rows) and counts, and fails
    a test that reads documents (`find`)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.pipelines: list[list[dict[str, Any]]] = []

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> Any:
        self.pipelines.append(pipeline)
        rows = self.rows

        class Cursor:
            def __aiter__(self) -> Any:
                return self._rows()

            async def _rows(self) -> Any:
                for row in rows:
                    yield row

        return Cursor()

    async def count_documents(self, query: dict[str, Any]) -> int:
        assert query == queries.opened_between(SINCE, UNTIL)
        return 7

    def find(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a report read the tickets one by one")


SINCE, UNTIL = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)


def repository_over(collection: AggregatingOnly) -> MongoTicketRepository:
    database: Any = {"tickets": collection, "agents": None, "customers": None}
    database["pending_surveys"] = database["agreements"] = None
    return MongoTicketRepository(database, None, None)  # type: ignore[arg-type]


def old_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How the SLA figures were computed in the process, from every ticket (the oracle)."""
    firsts = [r["first_response_s"] for r in rows if r.get("first_response_s") is not None]
    resolutions = [r["resolution_s"] for r in rows if r.get("resolution_s") is not None]
    breached = sum(1 for r in rows if r.get("breached"))
    return {
        "tickets": len(rows),
        "breached": breached,
        "breach_rate": round(breached / len(rows), 4) if rows else None,
        "mean_first_response_s": round(sum(firsts) / len(firsts)) if firsts else None,
        "mean_resolution_s": round(sum(resolutions) / len(resolutions)) if resolutions else None,
    }


TICKETS = [
    {"priority": "P1", "category": "billing", "breached": True, "first_response_s": 0},
    {"priority": "P1", "category": "billing", "breached": False, "first_response_s": 301},
    {"priority": "P1", "category": "delivery", "breached": True, "resolution_s": 7000},
    {"priority": "P3", "category": "delivery", "breached": False, "first_response_s": 10},
    {"priority": "P3", "category": "delivery", "breached": False, "resolution_s": 3},
    {"priority": "P4", "category": "product", "breached": False},
    {"priority": "P3", "category": "billing", "breached": True, "first_response_s": 99},
]


def grouped(tickets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What `sla_pipeline`'s $group returns for these tickets (as MongoDB computes it)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for t in tickets:
        row = rows.setdefault(
            (t["priority"], t["category"]),
            {
                "_id": {"priority": t["priority"], "category": t["category"]},
                "tickets": 0,
                "breached": 0,
                "first_response_total": 0,
                "first_responses": 0,
                "resolution_total": 0,
                "resolutions": 0,
            },
        )
        row["tickets"] += 1
        row["breached"] += t["breached"] is True
        for field, total, count in (
            ("first_response_s", "first_response_total", "first_responses"),
            ("resolution_s", "resolution_total", "resolutions"),
        ):
            if t.get(field) is not None:
                row[total] += t[field]
                row[count] += 1
    return list(rows.values())


async def test_the_sla_report_is_one_aggregation_with_the_former_figures() -> None:
    collection = AggregatingOnly(grouped(TICKETS))
    report = queries.sla_report(await repository_over(collection).sla_groups(SINCE, UNTIL))
    assert collection.pipelines == [queries.sla_pipeline(SINCE, UNTIL)]
    first, group = collection.pipelines[0][0], collection.pipelines[0][1]
    assert first == {"$match": {"opened_at": {"$gte": SINCE, "$lt": UNTIL}}}
    assert set(group) == {"$group"}
    assert report["all"] == old_summary(TICKETS)
    assert report["by_priority"] == {
        p: old_summary([t for t in TICKETS if t["priority"] == p]) for p in ("P1", "P3", "P4")
    }
    assert list(report["by_category"]) == ["billing", "delivery", "product"]
    assert report["by_category"]["delivery"] == old_summary(
        [t for t in TICKETS if t["category"] == "delivery"]
    )


async def test_the_root_cause_report_is_one_aggregation_and_a_count() -> None:
    rows = [
        {"_id": {"category": "delivery", "cause": "carrier"}, "tickets": 4},
        {"_id": {"category": "delivery", "cause": queries.UNRESOLVED}, "tickets": 1},
        {"_id": {"category": "billing", "cause": "carrier"}, "tickets": 2},
    ]
    collection = AggregatingOnly(rows)
    found, tickets = await repository_over(collection).root_cause_groups(SINCE, UNTIL)
    report = queries.root_cause_report(found, tickets)
    pipeline = collection.pipelines[0]
    assert pipeline[0] == {"$match": {"opened_at": {"$gte": SINCE, "$lt": UNTIL}}}
    assert pipeline[1]["$unwind"]["preserveNullAndEmptyArrays"] is True
    assert report == {
        "tickets": 7,
        "by_category": {
            "billing": {"carrier": 2},
            "delivery": {queries.UNRESOLVED: 1, "carrier": 4},
        },
        "top": [
            {"category": "delivery", "root_cause": "carrier", "tickets": 4},
            {"category": "billing", "root_cause": "carrier", "tickets": 2},
            {"category": "delivery", "root_cause": queries.UNRESOLVED, "tickets": 1},
        ],
    }
