"""The liability report is computed by the database: the repository runs two aggregation
pipelines and never reads the accounts one by one; the answer built from their rows has the
figures the former loop over every account computed."""

import os
from datetime import timedelta
from typing import Any

import pytest
from loyalty_fakes import InMemoryAccounts
from test_loyalty_ledger import RULES, T0, cancelled, placed, run

from crm_loyalty import queries
from crm_loyalty.adapters.mongo import MongoAccountRepository, to_document
from crm_runtime.crypto import NO_KEY, KeyRing

pytestmark = pytest.mark.unit
RING = KeyRing({"k": os.urandom(32)}, "k", os.urandom(32))


class AggregatingOnly:
    """A collection that answers each aggregation pipeline with the next given rows, and fails
    a test that reads documents (`find`)."""

    def __init__(self, *answers: list[dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.pipelines: list[list[dict[str, Any]]] = []

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> Any:
        self.pipelines.append(pipeline)
        rows = self.answers.pop(0)

        class Cursor:
            def __aiter__(self) -> Any:
                return self._rows()

            async def _rows(self) -> Any:
                for row in rows:
                    yield row

        return Cursor()

    def find(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the report read the accounts one by one")


def old_liability(docs: list[dict[str, Any]], now: Any) -> dict[str, Any]:
    """The former in-process computation, over every account document (the oracle)."""
    by_month: dict[str, int] = {}
    accounts = debt = expiring = 0
    for doc in docs:
        if doc["balance"] == 0 and doc["debt"] <= 0:
            continue
        accounts += 1
        debt += int(doc.get("debt", 0))
        for lot in doc.get("lots", []):
            if lot["remaining"] > 0:
                by_month[lot["expiry_month"]] = by_month.get(lot["expiry_month"], 0) + int(
                    lot["remaining"]
                )
                if lot["expires_at"] <= now + timedelta(days=30):
                    expiring += int(lot["remaining"])
    return {
        "accounts": accounts,
        "outstanding_points": sum(by_month.values()),
        "debt_points": debt,
        "expiring_within_30_days": expiring,
        "by_expiry_month": dict(sorted(by_month.items())),
    }


def grouped(docs: list[dict[str, Any]], now: Any) -> tuple[list[Any], list[Any]]:
    """What the two pipelines return for these documents (as MongoDB computes them)."""
    holding = [d for d in docs if d["balance"] != 0 or d["debt"] > 0]
    accounts = (
        [{"_id": None, "accounts": len(holding), "debt": sum(d["debt"] for d in holding)}]
        if holding
        else []
    )
    months: dict[str, dict[str, Any]] = {}
    for doc in holding:
        for lot in doc["lots"]:
            if lot["remaining"] > 0:
                row = months.setdefault(
                    lot["expiry_month"], {"_id": lot["expiry_month"], "points": 0, "expiring": 0}
                )
                row["points"] += lot["remaining"]
                row["expiring"] += lot["remaining"] * (
                    lot["expires_at"] <= now + timedelta(days=30)
                )
    return accounts, list(months.values())


async def test_liability_is_two_aggregations_with_the_former_figures() -> None:
    repo = InMemoryAccounts(RULES)
    # c1 earns over several months; c2 earns, the order is cancelled after a redemption: debt;
    # c3 holds nothing (excluded); c4's points are close to expiring.
    await run(repo, *[placed("c1", f"o{m}", "100", T0 + timedelta(days=31 * m)) for m in range(4)])
    await run(repo, placed("c2", "x1", "300", T0))
    repo.accounts["c2"].redeem("r1", 200, T0 + timedelta(days=1))
    await run(repo, cancelled("c2", "x1", T0 + timedelta(days=2)))
    await run(repo, placed("c3", "y1", "50", T0), cancelled("c3", "y1", T0))
    await run(repo, placed("c4", "z1", "70", T0 - timedelta(days=720)))
    docs = [to_document(a, RULES, NO_KEY, RING) for a in repo.accounts.values()]
    assert any(d["debt"] > 0 for d in docs)
    now = T0 + timedelta(days=3)
    collection = AggregatingOnly(*grouped(docs, now))
    database: Any = {"accounts": collection, "orders_apart": None, "ledger": None}
    repository = MongoAccountRepository(database, None, RULES, None)  # type: ignore[arg-type]
    report = await repository.liability(now)
    assert collection.pipelines == [queries.accounts_pipeline(), queries.lots_pipeline(now)]
    assert all(p[0] == {"$match": queries.HOLDING} for p in collection.pipelines)
    assert report == old_liability(docs, now)
    assert report["accounts"] == 3
    assert report["expiring_within_30_days"] == 70
