"""The read side: the filters of the task and agreement lists, and the follow-up report
(`GET /reports/follow-ups`) as aggregation pipelines the database runs, shaped from the few rows
they return (one per owner). Pure: the repository runs them; the routes' port is
`ports.RelationsQueries`."""

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crm_relations.domain.task import Task
from crm_relations.ports import AgreementFilter, TaskFilter

Document = dict[str, Any]
QUEUE = "queue"
"""The owner filter and report row of the tasks nobody owns."""
REPORT_CLASSES = ("on_time", "late", "overdue", "open", "cancelled")


def report_class(task: Task) -> str:
    """What the report counts a task as, stored with it (so the report groups, never computes)."""
    if task.status == "done":
        return "on_time" if task.on_time else "late"
    return task.status


def task_query(filters: TaskFilter, after: tuple[datetime, str] | None) -> Document:
    query: Document = {}
    if filters.owner is not None:
        query["owner"] = None if filters.owner == QUEUE else filters.owner
    if filters.status is not None:
        query["status"] = filters.status
    if filters.customer_id is not None:
        query["customer_id"] = filters.customer_id
    if filters.due_before is not None:
        query["due_at"] = {"$lt": filters.due_before}
    if after is not None:
        due, last_id = after
        keyset = {"$or": [{"due_at": {"$gt": due}}, {"due_at": due, "_id": {"$gt": last_id}}]}
        query = {"$and": [query, keyset]} if query else keyset
    return query


def agreement_query(filters: AgreementFilter, after: str | None) -> Document:
    query: Document = {}
    if filters.customer_id is not None:
        query["customer_id"] = filters.customer_id
    if filters.status is not None:
        query["status"] = filters.status
    if filters.owner is not None:
        query["owner"] = filters.owner
    if after is not None:
        query["_id"] = {"$gt": after}
    return query


def window(since: date, until: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[since 00:00, the day after until 00:00) in the calendar's zone."""
    return (
        datetime.combine(since, time(0), tzinfo=zone),
        datetime.combine(until + timedelta(days=1), time(0), tzinfo=zone),
    )


def _count(kind: str) -> Document:
    return {"$sum": {"$cond": [{"$eq": ["$report", kind]}, 1, 0]}}


def tasks_pipeline(start: datetime, end: datetime, now: datetime) -> list[Document]:
    """Per owner, the tasks due in [start, end) (cancelled ones left out) by how they ended."""
    return [
        {"$match": {"due_at": {"$gte": start, "$lt": end}, "status": {"$ne": "cancelled"}}},
        {
            "$group": {
                "_id": "$owner",
                "due": {"$sum": 1},
                **{kind: _count(kind) for kind in ("on_time", "late", "overdue", "open")},
            }
        },
    ]


def coverage_pipeline(now: datetime) -> list[Document]:
    """Per owner, the customers under a plan and those contacted within its interval."""
    return [
        {"$match": {"plan_days": {"$ne": None}, "erased": False}},
        {
            "$group": {
                "_id": "$owner",
                "customers": {"$sum": 1},
                "contacted": {"$sum": {"$cond": [{"$gt": ["$contact_due_at", now]}, 1, 0]}},
            }
        },
    ]


def follow_up_report(
    tasks: list[Document], coverage: list[Document], since: date, until: date
) -> Document:
    """The answer of `GET /reports/follow-ups` from the rows of the two pipelines."""
    owners: dict[str, Document] = {}

    def row(owner: Any) -> Document:
        name = QUEUE if owner is None else str(owner)
        return owners.setdefault(
            name,
            {
                "owner": name,
                "due": 0,
                "done_on_time": 0,
                "done_late": 0,
                "overdue": 0,
                "open": 0,
                "customers": 0,
                "contacted_within_plan": 0,
                "contacted_share": None,
            },
        )

    for found in tasks:
        r = row(found["_id"])
        r["due"], r["overdue"], r["open"] = (
            int(found["due"]),
            int(found["overdue"]),
            int(found["open"]),
        )
        r["done_on_time"], r["done_late"] = int(found["on_time"]), int(found["late"])
    for found in coverage:
        r = row(found["_id"])
        r["customers"], r["contacted_within_plan"] = (
            int(found["customers"]),
            int(found["contacted"]),
        )
        if r["customers"]:
            r["contacted_share"] = round(r["contacted_within_plan"] / r["customers"], 4)
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "owners": [owners[name] for name in sorted(owners)],
    }
