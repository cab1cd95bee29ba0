"""Tickets, agents and customer grades in MongoDB (`crm_tickets`): the `TicketRepository` and
`TicketQueries` ports.

`tickets` holds each ticket with its comments, history and status log (optimistic concurrency on
`version`), and the figures the domain computed for it: business seconds for the reports,
`next_check_at` for the SLA sweep; `agents` the agents; `customers` the grade the archive last
announced; `agreements` each agreement's days and complaint SLA as relations last announced
them; `pending_surveys` the surveys waiting for their ticket. One `save(changes)` writes a use
case's changes in one transaction with the inbox and the outbox.
"""

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_contracts import CloudEvent
from crm_runtime.crypto import SHREDDED, CustomerKeys
from crm_runtime.mongo import Document, due_ids, find_by_ids, save_versioned
from crm_runtime.paging import present
from crm_runtime.uow import UnitOfWork
from crm_tickets import queries
from crm_tickets.adapters.documents import (
    FREE_TEXT_DETAILS,
    agent_document,
    agent_from_document,
    agreement_document,
    agreement_from_document,
    from_document,
    listed_from_document,
    pending_document,
    pending_from_document,
    to_document,
)
from crm_tickets.domain.agent import Agent
from crm_tickets.domain.agreement import AgreementSla
from crm_tickets.domain.ticket import OPEN, Ticket
from crm_tickets.ports import Changes, PendingSurvey
from crm_tickets.queries import TicketFilter


class MongoTicketRepository:
    def __init__(
        self, database: AsyncDatabase[Document], uow: UnitOfWork, keys: CustomerKeys
    ) -> None:
        self.tickets: AsyncCollection[Document] = database["tickets"]
        self.agents: AsyncCollection[Document] = database["agents"]
        self.customers: AsyncCollection[Document] = database["customers"]
        self.pending: AsyncCollection[Document] = database["pending_surveys"]
        self.agreement_slas: AsyncCollection[Document] = database["agreements"]
        self.uow = uow
        self.keys = keys

    async def open_by_priority(self) -> dict[str, int]:
        """Tickets neither resolved nor closed, by priority."""
        pipeline: list[Document] = [
            {"$match": {"status": {"$nin": ["resolved", "closed"]}}},
            {"$group": {"_id": "$priority", "n": {"$sum": 1}}},
        ]
        return {str(row["_id"]): row["n"] async for row in await self.tickets.aggregate(pipeline)}

    async def ensure_indexes(self) -> None:
        for key in ("status", "priority", "queue", "assignee", "customer_id", "next_check_at"):
            await self.tickets.create_index(key)
        await self.tickets.create_index("opened_at")
        await self.tickets.create_index("survey.at")
        await self.agents.create_index("queues")
        await self.agreement_slas.create_index("customer_id")

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        return await self.uow.unprocessed(events)

    async def load(self, ticket_ids: Sequence[str]) -> dict[str, Ticket]:
        cursor = find_by_ids(self.tickets, ticket_ids)
        docs = [doc async for doc in cursor]
        ciphers = await self.keys.ciphers(doc["customer_id"] for doc in docs)
        return {doc["_id"]: from_document(doc, ciphers[doc["customer_id"]]) for doc in docs}

    async def get(self, ticket_id: str) -> Ticket | None:
        return (await self.load([ticket_id])).get(ticket_id)

    async def pending_surveys(self, ticket_ids: Sequence[str]) -> dict[str, PendingSurvey]:
        cursor = find_by_ids(self.pending, ticket_ids)
        return {doc["_id"]: pending_from_document(doc) async for doc in cursor}

    async def grades(self, customer_ids: Sequence[str]) -> dict[str, str]:
        cursor = find_by_ids(self.customers, customer_ids)
        return {doc["_id"]: doc["grade"] async for doc in cursor}

    async def agreements(self, customer_ids: Sequence[str]) -> dict[str, AgreementSla]:
        cursor = self.agreement_slas.find({"customer_id": {"$in": list(customer_ids)}})
        return {doc["_id"]: agreement_from_document(doc) async for doc in cursor}

    async def agents_in(self, queue: str) -> list[Agent]:
        cursor = self.agents.find({"queues": queue}, sort=[("_id", ASCENDING)])
        return [agent_from_document(doc) async for doc in cursor]

    async def all_agents(self) -> list[Agent]:
        cursor = self.agents.find({}, sort=[("_id", ASCENDING)])
        return [agent_from_document(doc) async for doc in cursor]

    async def agent(self, agent_id: str) -> Agent | None:
        doc = await self.agents.find_one({"_id": agent_id})
        return agent_from_document(doc) if doc else None

    async def open_load(self, agent_ids: Sequence[str]) -> dict[str, int]:
        loads = dict.fromkeys(agent_ids, 0)
        cursor = self.tickets.find(
            {"assignee": {"$in": list(agent_ids)}, "status": {"$in": sorted(OPEN)}},
            {"assignee": 1},
        )
        async for doc in cursor:
            loads[doc["assignee"]] = loads.get(doc["assignee"], 0) + 1
        return loads

    async def due(self, now: datetime, limit: int) -> list[str]:
        return await due_ids(self.tickets, "next_check_at", now, limit)

    async def unassigned(self, limit: int) -> list[str]:
        cursor = self.tickets.find(
            {"status": "new", "assignee": None},
            {"_id": 1},
            sort=[("opened_at", ASCENDING)],
            limit=limit,
        )
        return [doc["_id"] async for doc in cursor]

    async def save(self, changes: Changes) -> None:
        """One transaction: tickets (optimistic on `version`), grades, agents, pending surveys,
        inbox, outbox, and the erasure of `erased` customers (data keys destroyed, texts
        dropped)."""
        records = list(changes.tickets.values())
        erased = changes.erased
        ciphers = await self.keys.ciphers(
            (r.ticket.customer_id for r in records if r.ticket.customer_id not in erased),
            create=True,
        )
        documents = [
            (to_document(t, figures, ciphers.get(t.customer_id, SHREDDED)), t.version)
            for t, figures in records
        ]
        async with self.uow.commit(changes.applied, changes.outbound) as session:
            await save_versioned(self.tickets, documents, session, what="ticket")
            if erased:
                await self.keys.destroy(erased, session=session)
                await self._drop_texts(erased, session)
            if changes.grades:
                await self.customers.bulk_write(
                    [
                        UpdateOne({"_id": c}, {"$set": {"grade": g}}, upsert=True)
                        for c, g in changes.grades.items()
                    ],
                    session=session,
                )
            for agreement in changes.agreements.values():
                await self.agreement_slas.replace_one(
                    {"_id": agreement.agreement_id},
                    agreement_document(agreement),
                    upsert=True,
                    session=session,
                )
            for survey in changes.pending:
                await self.pending.replace_one(
                    {"_id": survey.ticket_id},
                    pending_document(survey),
                    upsert=True,
                    session=session,
                )
            if changes.settled:
                await self.pending.delete_many({"_id": {"$in": changes.settled}}, session=session)
            for agent in changes.agents:
                await self.agents.replace_one(
                    {"_id": agent.agent_id}, agent_document(agent), upsert=True, session=session
                )
            for agent_id, at in changes.last_assigned.items():
                await self.agents.update_one(
                    {"_id": agent_id}, {"$set": {"last_assigned_at": at}}, session=session
                )
        for record in records:
            record.ticket.version += 1

    async def _drop_texts(self, customer_ids: Sequence[str], session: Any) -> None:
        """Beyond the shredded key: no sealed text of an erased customer is kept at all."""
        query = {"customer_id": {"$in": list(customer_ids)}}
        projection = {"comments": 1, "history": 1}
        async for doc in self.tickets.find(query, projection, session=session):
            comments = [{**c, "text": None} for c in doc.get("comments", [])]
            history = [
                {
                    **h,
                    "details": {
                        **h["details"],
                        **dict.fromkeys(FREE_TEXT_DETAILS & h["details"].keys()),
                    },
                }
                for h in doc.get("history", [])
            ]
            await self.tickets.update_one(
                {"_id": doc["_id"]},
                # The version moves: a save prepared before the erasure cannot write texts back.
                {
                    "$set": {
                        "description": None,
                        "intake_fingerprint": None,  # a hash of the description among others
                        "comments": comments,
                        "history": history,
                    },
                    "$inc": {"version": 1},
                },
                session=session,
            )

    # -- queries ------------------------------------------------------------------------------
    async def find(self, where: TicketFilter, after: str | None, limit: int) -> list[Ticket]:
        query: Document = present(**dataclasses.asdict(where))
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.tickets.find(
            query,
            {"history": 0, "comments": 0, "description": 0, "intake_fingerprint": 0, "survey": 0},
            sort=[("_id", ASCENDING)],
            limit=limit,
        )
        return [listed_from_document(doc) async for doc in cursor]

    async def sla_groups(self, since: datetime, until: datetime) -> list[Document]:
        """The SLA figures of the tickets opened in [since, until), grouped in the database."""
        cursor = await self.tickets.aggregate(queries.sla_pipeline(since, until))
        return [row async for row in cursor]

    async def root_cause_groups(
        self, since: datetime, until: datetime
    ) -> tuple[list[Document], int]:
        """Tickets by category and root cause, grouped in the database, and how many there are."""
        cursor = await self.tickets.aggregate(queries.root_cause_pipeline(since, until))
        rows = [row async for row in cursor]
        return rows, await self.tickets.count_documents(queries.opened_between(since, until))

    async def satisfaction_groups(
        self, since: datetime, until: datetime, boundaries: Sequence[datetime]
    ) -> list[Document]:
        """The surveys answered in [since, until) per period, grouped in the database."""
        pipeline = queries.satisfaction_pipeline(since, until, boundaries)
        return [row async for row in await self.tickets.aggregate(pipeline)]
