"""Customers, tasks, agreements and order lines in MongoDB (`crm_relations`).

Each collection holds one record per document with a `version` for optimistic concurrency; all
four are written in one transaction with the inbox and the outbox (`save`). A task's summary and
an agreement's price note are sealed with the customer's data key (ADR 0006); dates are ISO
strings, money Decimal128.
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from pymongo import ASCENDING, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_contracts import CloudEvent
from crm_relations import queries
from crm_relations.domain.agreement import Agreement, OrderLine, PeriodFigures, Terms
from crm_relations.domain.customer import Customer
from crm_relations.domain.rules import RelationsRules
from crm_relations.domain.task import Task, next_notice_at
from crm_relations.ports import AgreementFilter, Changes, TaskFilter
from crm_runtime.crypto import NO_KEY, SHREDDED, CustomerKeys, FieldCipher
from crm_runtime.documents import dataclass_document, dataclass_from
from crm_runtime.mongo import Document, find_by_ids, from_decimal128, save_versioned, to_decimal128
from crm_runtime.uow import UnitOfWork

DIGEST_MARKS_KEPT_S = 40 * 24 * 3600
"""A morning digest's mark (`digests`: given for this owner and day) is kept 40 days."""


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


# -- documents ------------------------------------------------------------------------------
def customer_document(customer: Customer) -> Document:
    return dataclass_document(customer, "customer_id")


def customer_from(doc: Document) -> Customer:
    return dataclass_from(Customer, doc, "customer_id")


def task_document(task: Task, cipher: FieldCipher, rules: RelationsRules) -> Document:
    escalate = rules.calendar.add_working_days(task.due_at, rules.escalate_after_business_days)
    summary = cipher.seal(f"task/{task.task_id}/summary", task.summary)
    return {
        **dataclass_document(task, "task_id", summary=summary),
        "next_notice_at": next_notice_at(task, escalate),
        "report": queries.report_class(task),
    }


def task_from(doc: Document, cipher: FieldCipher) -> Task:
    return dataclass_from(
        Task, doc, "task_id", summary=cipher.open(f"task/{doc['_id']}/summary", doc.get("summary"))
    )


def agreement_document(agreement: Agreement, cipher: FieldCipher) -> Document:
    terms = agreement.terms
    return dataclass_document(
        agreement,
        "agreement_id",
        starts_on=_iso(agreement.starts_on),
        ends_on=_iso(agreement.ends_on),
        closed_through=_iso(agreement.closed_through),
        renewal_notice_for=_iso(agreement.renewal_notice_for),
        terminated_on=_iso(agreement.terminated_on),
        terms={
            "period": terms.period,
            "measure": terms.measure,
            "minimum": to_decimal128(terms.minimum),
            "currency": terms.currency,
            "renewal_notice_days": terms.renewal_notice_days,
            "first_response_hours": terms.first_response_hours,
            "price_note": cipher.seal(
                f"agreement/{agreement.agreement_id}/price_note", terms.price_note
            ),
        },
        periods=[
            {
                "start": p.start.isoformat(),
                "end": p.end.isoformat(),
                "spend": to_decimal128(p.spend),
                "orders": p.orders,
                "at_risk_notified": p.at_risk_notified,
                "closed": p.closed,
                "met": p.met,
            }
            for p in agreement.periods
        ],
    )


def agreement_from(doc: Document, cipher: FieldCipher) -> Agreement:
    t = doc["terms"]
    terms = Terms(
        period=t["period"],
        measure=t["measure"],
        minimum=from_decimal128(t["minimum"]),
        currency=t["currency"],
        renewal_notice_days=t["renewal_notice_days"],
        first_response_hours=t.get("first_response_hours"),
        price_note=cipher.open(f"agreement/{doc['_id']}/price_note", t.get("price_note")),
    )
    return dataclass_from(
        Agreement,
        doc,
        "agreement_id",
        starts_on=date.fromisoformat(doc["starts_on"]),
        ends_on=date.fromisoformat(doc["ends_on"]),
        closed_through=_day(doc.get("closed_through")),
        renewal_notice_for=_day(doc.get("renewal_notice_for")),
        terminated_on=_day(doc.get("terminated_on")),
        terms=terms,
        periods=[
            PeriodFigures(
                date.fromisoformat(p["start"]),
                date.fromisoformat(p["end"]),
                from_decimal128(p["spend"]),
                p["orders"],
                p["at_risk_notified"],
                p["closed"],
                p.get("met"),
            )
            for p in doc.get("periods", [])
        ],
    )


def line_document(line: OrderLine) -> Document:
    return dataclass_document(
        line,
        "order_id",
        id_key="order_id",
        period_start=line.period_start.isoformat(),
        amount=to_decimal128(line.amount),
        refunded=to_decimal128(line.refunded),
    ) | {"_id": f"{line.agreement_id}/{line.order_id}"}


def line_from(doc: Document) -> OrderLine:
    return dataclass_from(
        OrderLine,
        doc,
        "order_id",
        id_key="order_id",
        period_start=date.fromisoformat(doc["period_start"]),
        amount=from_decimal128(doc["amount"]),
        refunded=from_decimal128(doc["refunded"]),
    )


class MongoRelationsRepository:
    def __init__(
        self,
        database: AsyncDatabase[Document],
        uow: UnitOfWork,
        rules: RelationsRules,
        keys: CustomerKeys,
    ) -> None:
        self.customers_: AsyncCollection[Document] = database["customers"]
        self.tasks_: AsyncCollection[Document] = database["tasks"]
        self.agreements_: AsyncCollection[Document] = database["agreements"]
        self.lines: AsyncCollection[Document] = database["order_lines"]
        self.digests_: AsyncCollection[Document] = database["digests"]
        self.uow = uow
        self.rules = rules
        self.keys = keys

    async def ensure_indexes(self) -> None:
        await self.tasks_.create_index([("customer_id", ASCENDING), ("status", ASCENDING)])
        await self.tasks_.create_index(
            [("owner", ASCENDING), ("due_at", ASCENDING), ("_id", ASCENDING)]
        )
        await self.tasks_.create_index([("due_at", ASCENDING), ("_id", ASCENDING)])
        await self.tasks_.create_index("next_notice_at")
        await self.agreements_.create_index([("customer_id", ASCENDING), ("status", ASCENDING)])
        await self.agreements_.create_index("status")
        await self.lines.create_index([("customer_id", ASCENDING), ("order_id", ASCENDING)])
        await self.customers_.create_index("owner")
        await self.digests_.create_index("day")
        await self.digests_.create_index("at", expireAfterSeconds=DIGEST_MARKS_KEPT_S)

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        return await self.uow.unprocessed(events)

    # -- reads --------------------------------------------------------------------------------
    async def customers(self, customer_ids: Sequence[str]) -> dict[str, Customer]:
        cursor = find_by_ids(self.customers_, customer_ids)
        return {doc["_id"]: customer_from(doc) async for doc in cursor}

    async def _tasks(self, query: Document, **options: Any) -> list[Task]:
        docs = [doc async for doc in self.tasks_.find(query, **options)]
        ciphers = await self.keys.ciphers(d["customer_id"] for d in docs if d.get("summary"))
        return [task_from(d, ciphers.get(d["customer_id"], NO_KEY)) for d in docs]

    async def tasks(self, task_ids: Sequence[str]) -> dict[str, Task]:
        return {t.task_id: t for t in await self._tasks({"_id": {"$in": list(task_ids)}})}

    async def open_tasks(self, customer_ids: Sequence[str]) -> list[Task]:
        query = {"customer_id": {"$in": list(customer_ids)}, "status": {"$in": ["open", "overdue"]}}
        return await self._tasks(query)

    async def tasks_to_notice(self, now: datetime, limit: int) -> list[Task]:
        return await self._tasks(
            {"next_notice_at": {"$lte": now}}, sort=[("next_notice_at", ASCENDING)], limit=limit
        )

    async def _agreements(self, query: Document, **options: Any) -> list[Agreement]:
        docs = [doc async for doc in self.agreements_.find(query, **options)]
        noted = (d["customer_id"] for d in docs if d["terms"].get("price_note"))
        ciphers = await self.keys.ciphers(noted)
        return [agreement_from(d, ciphers.get(d["customer_id"], NO_KEY)) for d in docs]

    async def agreements(self, agreement_ids: Sequence[str]) -> dict[str, Agreement]:
        found = await self._agreements({"_id": {"$in": list(agreement_ids)}})
        return {a.agreement_id: a for a in found}

    async def agreements_of(self, customer_ids: Sequence[str]) -> list[Agreement]:
        return await self._agreements(
            {"customer_id": {"$in": list(customer_ids)}, "status": "active"}
        )

    async def active_agreements(self, after_id: str | None, limit: int) -> list[Agreement]:
        query: Document = {"status": "active"}
        if after_id is not None:
            query["_id"] = {"$gt": after_id}
        return await self._agreements(query, sort=[("_id", ASCENDING)], limit=limit)

    async def owners_due(self, until: datetime, now: datetime) -> dict[str, tuple[int, int]]:
        match: Document = {
            "status": {"$in": ["open", "overdue"]},
            "owner": {"$ne": None},
            "due_at": {"$lte": until},
        }
        totals = await self._count_by_owner(match)
        overdue = await self._count_by_owner({**match, "due_at": {"$lte": until, "$lt": now}})
        return {owner: (n, overdue.get(owner, 0)) for owner, n in totals.items()}

    async def _count_by_owner(self, match: Document) -> dict[str, int]:
        pipeline: list[Document] = [
            {"$match": match},
            {"$group": {"_id": "$owner", "n": {"$sum": 1}}},
        ]
        return {
            str(row["_id"]): int(row["n"]) async for row in await self.tasks_.aggregate(pipeline)
        }

    async def due_of(self, owner: str, until: datetime, limit: int) -> list[Task]:
        query = {"owner": owner, "status": {"$in": ["open", "overdue"]}, "due_at": {"$lte": until}}
        return await self._tasks(
            query, sort=[("due_at", ASCENDING), ("_id", ASCENDING)], limit=limit
        )

    async def digests_given(self, day: date) -> set[str]:
        cursor = self.digests_.find({"day": day.isoformat()}, {"owner": 1})
        return {doc["owner"] async for doc in cursor}

    async def order_lines(
        self, customer_ids: Sequence[str], order_ids: Sequence[str]
    ) -> list[OrderLine]:
        query = {"customer_id": {"$in": list(customer_ids)}, "order_id": {"$in": list(order_ids)}}
        return [line_from(doc) async for doc in self.lines.find(query)]

    # -- the one write ------------------------------------------------------------------------
    async def save(self, changes: Changes) -> None:
        """One transaction: customers, tasks, agreements (optimistic on `version`), order lines,
        inbox, outbox, and the erasure of the `erased` customers (data keys destroyed, summaries
        and price notes dropped)."""
        erased = set(changes.erased)
        sealing = {t.customer_id for t in changes.tasks if t.summary} | {
            a.customer_id for a in changes.agreements if a.terms.price_note
        }
        ciphers = await self.keys.ciphers(sealing - erased, create=True)

        def cipher(customer_id: str) -> FieldCipher:
            return SHREDDED if customer_id in erased else ciphers.get(customer_id, NO_KEY)

        rules = self.rules
        customers = [(customer_document(c), c.version) for c in changes.customers]
        tasks = [(task_document(t, cipher(t.customer_id), rules), t.version) for t in changes.tasks]
        agreements = [
            (agreement_document(a, cipher(a.customer_id)), a.version) for a in changes.agreements
        ]
        async with self.uow.commit(
            changes.applied, changes.outbound, unmarked=changes.unmarked
        ) as session:
            await save_versioned(self.customers_, customers, session, what="customer")
            await save_versioned(self.tasks_, tasks, session, what="task")
            await save_versioned(self.agreements_, agreements, session, what="agreement")
            if changes.order_lines:
                documents = [line_document(line) for line in changes.order_lines]
                await self.lines.bulk_write(
                    [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in documents],
                    session=session,
                )
            if changes.digests:
                await self.digests_.insert_many(
                    [
                        {
                            "_id": f"{day.isoformat()}/{owner}",
                            "day": day.isoformat(),
                            "owner": owner,
                            "at": datetime.now(UTC),
                        }
                        for day, owner in changes.digests
                    ],
                    session=session,
                )
            if erased:
                await self.keys.destroy(erased, session=session)
                await self.tasks_.update_many(
                    {"customer_id": {"$in": sorted(erased)}},
                    {"$set": {"summary": None}},
                    session=session,
                )
                await self.agreements_.update_many(
                    {"customer_id": {"$in": sorted(erased)}},
                    {"$set": {"terms.price_note": None}},
                    session=session,
                )
        for customer in changes.customers:
            customer.version += 1
        for task in changes.tasks:
            task.version += 1
        for agreement in changes.agreements:
            agreement.version += 1

    # -- queries ------------------------------------------------------------------------------
    async def task_page(
        self, filters: TaskFilter, after: tuple[datetime, str] | None, limit: int
    ) -> list[Task]:
        query = queries.task_query(filters, after)
        return await self._tasks(
            query, sort=[("due_at", ASCENDING), ("_id", ASCENDING)], limit=limit
        )

    async def agreement_page(
        self, filters: AgreementFilter, after: str | None, limit: int
    ) -> list[Agreement]:
        query = queries.agreement_query(filters, after)
        return await self._agreements(query, sort=[("_id", ASCENDING)], limit=limit)

    async def follow_up_report(self, now: datetime, since: date, until: date) -> dict[str, Any]:
        start, end = queries.window(since, until, self.rules.calendar.zone)
        tasks = [
            row
            async for row in await self.tasks_.aggregate(queries.tasks_pipeline(start, end, now))
        ]
        plan = [
            row async for row in await self.customers_.aggregate(queries.coverage_pipeline(now))
        ]
        return queries.follow_up_report(tasks, plan, since, until)

    async def open_task_counts(self) -> dict[str, int]:
        """Open and overdue tasks (for the gauge)."""
        pipeline: list[Document] = [
            {"$match": {"status": {"$in": ["open", "overdue"]}}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]
        return {
            str(row["_id"]): int(row["n"]) async for row in await self.tasks_.aggregate(pipeline)
        }
