"""The read side of the liability report: aggregation pipelines the database runs over the
accounts, and the answer shaped from the few rows they return (one per expiry month), never from
the accounts themselves. Pure: the repository runs them (`MongoAccountRepository.liability`); the
routes' port for it is `ports.AccountQueries`."""

from datetime import datetime, timedelta
from typing import Any

Document = dict[str, Any]
EXPIRING_DAYS = 30

HOLDING: Document = {"$or": [{"balance": {"$ne": 0}}, {"debt": {"$gt": 0}}]}
"""Accounts that hold points or owe some."""


def accounts_pipeline() -> list[Document]:
    """How many accounts hold points or owe some, and the debt they record."""
    return [
        {"$match": HOLDING},
        {"$group": {"_id": None, "accounts": {"$sum": 1}, "debt": {"$sum": "$debt"}}},
    ]


def lots_pipeline(now: datetime) -> list[Document]:
    """Points left in lots, per expiry month, and those of them expiring within 30 days."""
    horizon = now + timedelta(days=EXPIRING_DAYS)
    return [
        {"$match": HOLDING},
        {"$unwind": "$lots"},
        {"$match": {"lots.remaining": {"$gt": 0}}},
        {
            "$group": {
                "_id": "$lots.expiry_month",
                "points": {"$sum": "$lots.remaining"},
                "expiring": {
                    "$sum": {
                        "$cond": [{"$lte": ["$lots.expires_at", horizon]}, "$lots.remaining", 0]
                    }
                },
            }
        },
    ]


def liability_report(accounts: list[Document], months: list[Document]) -> Document:
    """The answer of `GET /reports/liability` from the rows of the two pipelines."""
    by_month = {str(row["_id"]): int(row["points"]) for row in months}
    held = accounts[0] if accounts else {}
    return {
        "accounts": int(held.get("accounts", 0)),
        "outstanding_points": sum(by_month.values()),
        "debt_points": int(held.get("debt", 0)),
        "expiring_within_30_days": sum(int(row["expiring"]) for row in months),
        "by_expiry_month": dict(sorted(by_month.items())),
    }
