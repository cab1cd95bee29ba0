"""Tickets, agents and customer grades in MongoDB (`crm_tickets`).

`tickets` holds each ticket with its comments, history and status log (optimistic concurrency on
`version`) and `next_check_at` for the SLA sweep; `agents` the agents; `customers` the grade the
archive last announced. Tickets are saved in one transaction with the inbox and the outbox.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_contracts import CloudEvent
from crm_runtime.crypto import SHREDDED, CustomerKeys, FieldCipher
from crm_runtime.mongo import Document, save_versioned
from crm_runtime.outbox import OutboundMessage
from crm_runtime.sweeps import Clock
from crm_runtime.uow import UnitOfWork
from crm_tickets import queries
from crm_tickets.domain.rules import TicketRules
from crm_tickets.domain.ticket import OPEN, Change, Comment, SlaState, Survey, Ticket
from crm_tickets.handlers import Agent, PendingSurvey

FREE_TEXT_DETAILS = frozenset({"reason"})
"""History details typed by people (a reopening's reason): sealed like the comments."""


def _seal(details: dict[str, Any], cipher: FieldCipher, place: str) -> dict[str, Any]:
    return {
        k: cipher.seal(f"{place}/{k}", v) if k in FREE_TEXT_DETAILS and v is not None else v
        for k, v in details.items()
    }


def _open(details: dict[str, Any], cipher: FieldCipher, place: str) -> dict[str, Any]:
    return {
        k: cipher.open(f"{place}/{k}", v) if k in FREE_TEXT_DETAILS and v is not None else v
        for k, v in details.items()
    }


def to_document(ticket: Ticket, now: datetime, rules: TicketRules, cipher: FieldCipher) -> Document:
    """Description and comment texts (free text: may hold personal data) are sealed with the
    customer's data key."""
    return {
        "_id": ticket.ticket_id,
        "customer_id": ticket.customer_id,
        "opened_at": ticket.opened_at,
        "channel": ticket.channel,
        "category": ticket.category,
        "severity": ticket.severity,
        "priority": ticket.priority,
        "queue": ticket.queue,
        "status": ticket.status,
        "complaint_id": ticket.complaint_id,
        "order_id": ticket.order_id,
        "description": cipher.seal(f"{ticket.ticket_id}/description", ticket.description),
        "assignee": ticket.assignee,
        "comments": [
            {
                "id": c.comment_id,
                "at": c.at,
                "author": c.author,
                "text": cipher.seal(f"{ticket.ticket_id}/comment/{c.comment_id}", c.text),
                "public": c.public,
            }
            for c in ticket.comments
        ],
        "root_causes": ticket.root_causes,
        "history": [
            {
                "at": h.at,
                "actor": h.actor,
                "action": h.action,
                "details": _seal(h.details, cipher, f"{ticket.ticket_id}/history/{i}"),
            }
            for i, h in enumerate(ticket.history)
        ],
        "status_log": [{"at": at, "status": status} for at, status in ticket.status_log],
        "first_response_at": ticket.first_response_at,
        "resolved_at": ticket.resolved_at,
        "closed_at": ticket.closed_at,
        "sla": {k: {"warned": v.warned, "breached": v.breached} for k, v in ticket.sla.items()},
        "breached": any(v.breached for v in ticket.sla.values()),
        "escalated": ticket.escalated,
        "survey": (
            {
                "id": ticket.survey.survey_id,
                "at": ticket.survey.at,
                "csat": ticket.survey.csat,
                "nps": ticket.survey.nps,
            }
            if ticket.survey
            else None
        ),
        "flagged_for_review": ticket.flagged_for_review,
        "history_omitted": ticket.history_omitted,
        # Figures for reports (business seconds), and when the sweep should look again.
        "first_response_s": (
            ticket.elapsed("first_response", now, rules) if ticket.first_response_at else None
        ),
        "resolution_s": ticket.elapsed("resolution", now, rules) if ticket.resolved_at else None,
        "next_check_at": ticket.next_check_at(now, rules),
        "version": ticket.version,
    }


def from_document(doc: Document, cipher: FieldCipher) -> Ticket:
    """A shredded key (the customer was erased) opens nothing: texts come back empty."""
    survey = doc.get("survey")
    return Ticket(
        ticket_id=doc["_id"],
        customer_id=doc["customer_id"],
        opened_at=doc["opened_at"],
        channel=doc["channel"],
        category=doc["category"],
        severity=doc["severity"],
        priority=doc["priority"],
        queue=doc["queue"],
        status=doc["status"],
        complaint_id=doc.get("complaint_id"),
        order_id=doc.get("order_id"),
        description=cipher.open(f"{doc['_id']}/description", doc.get("description")) or "",
        assignee=doc.get("assignee"),
        comments=[
            Comment(
                c["id"],
                c["at"],
                c["author"],
                cipher.open(f"{doc['_id']}/comment/{c['id']}", c.get("text")) or "",
                c["public"],
            )
            for c in doc.get("comments", [])
        ],
        root_causes=list(doc.get("root_causes", [])),
        history=[
            Change(
                h["at"],
                h["actor"],
                h["action"],
                _open(h.get("details", {}), cipher, f"{doc['_id']}/history/{i}"),
            )
            for i, h in enumerate(doc.get("history", []))
        ],
        status_log=[(s["at"], s["status"]) for s in doc.get("status_log", [])],
        first_response_at=doc.get("first_response_at"),
        resolved_at=doc.get("resolved_at"),
        closed_at=doc.get("closed_at"),
        sla={k: SlaState(v["warned"], v["breached"]) for k, v in doc.get("sla", {}).items()},
        escalated=doc.get("escalated", False),
        survey=Survey(survey["id"], survey["at"], survey["csat"], survey["nps"])
        if survey
        else None,
        flagged_for_review=doc.get("flagged_for_review", False),
        history_omitted=doc.get("history_omitted", 0),
        version=doc["version"],
    )


def agent_document(agent: Agent) -> Document:
    return {
        "_id": agent.agent_id,
        "name": agent.name,
        "queues": agent.queues,
        "capacity": agent.capacity,
        "active": agent.active,
        "last_assigned_at": agent.last_assigned_at,
    }


def agent_from_document(doc: Document) -> Agent:
    return Agent(
        doc["_id"],
        doc.get("name", ""),
        list(doc.get("queues", [])),
        doc.get("capacity", 0),
        doc.get("active", True),
        doc.get("last_assigned_at"),
    )


class MongoTicketRepository:
    def __init__(
        self,
        database: AsyncDatabase[Document],
        uow: UnitOfWork,
        rules: TicketRules,
        clock: Clock,
        keys: CustomerKeys,
    ) -> None:
        self.keys = keys
        self.tickets: AsyncCollection[Document] = database["tickets"]
        self.agents_: AsyncCollection[Document] = database["agents"]
        self.customers: AsyncCollection[Document] = database["customers"]
        self.pending: AsyncCollection[Document] = database["pending_surveys"]
        self.uow = uow
        self.rules = rules
        self.clock = clock

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
        await self.agents_.create_index("queues")

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        return await self.uow.unprocessed(events)

    async def load(self, ticket_ids: Sequence[str]) -> dict[str, Ticket]:
        cursor = self.tickets.find({"_id": {"$in": list(ticket_ids)}})
        docs = [doc async for doc in cursor]
        ciphers = await self.keys.ciphers(doc["customer_id"] for doc in docs)
        return {doc["_id"]: from_document(doc, ciphers[doc["customer_id"]]) for doc in docs}

    async def get(self, ticket_id: str) -> Ticket | None:
        return (await self.load([ticket_id])).get(ticket_id)

    async def pending_surveys(self, ticket_ids: Sequence[str]) -> dict[str, PendingSurvey]:
        cursor = self.pending.find({"_id": {"$in": list(ticket_ids)}})
        return {
            doc["_id"]: PendingSurvey(
                doc["_id"],
                doc["survey_id"],
                doc.get("csat"),
                doc.get("nps"),
                doc["at"],
                doc["event_id"],
            )
            async for doc in cursor
        }

    async def grades(self, customer_ids: Sequence[str]) -> dict[str, str]:
        cursor = self.customers.find({"_id": {"$in": list(customer_ids)}})
        return {doc["_id"]: doc["grade"] async for doc in cursor}

    async def agents(self, queue: str) -> list[Agent]:
        cursor = self.agents_.find({"queues": queue}, sort=[("_id", ASCENDING)])
        return [agent_from_document(doc) async for doc in cursor]

    async def all_agents(self) -> list[Agent]:
        cursor = self.agents_.find({}, sort=[("_id", ASCENDING)])
        return [agent_from_document(doc) async for doc in cursor]

    async def agent(self, agent_id: str) -> Agent | None:
        doc = await self.agents_.find_one({"_id": agent_id})
        return agent_from_document(doc) if doc else None

    async def put_agent(self, agent: Agent) -> None:
        await self.agents_.replace_one({"_id": agent.agent_id}, agent_document(agent), upsert=True)

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
        cursor = self.tickets.find(
            {"next_check_at": {"$lte": now}},
            {"_id": 1},
            sort=[("next_check_at", ASCENDING)],
            limit=limit,
        )
        return [doc["_id"] async for doc in cursor]

    async def unassigned(self, limit: int) -> list[str]:
        cursor = self.tickets.find(
            {"status": "new", "assignee": None},
            {"_id": 1},
            sort=[("opened_at", ASCENDING)],
            limit=limit,
        )
        return [doc["_id"] async for doc in cursor]

    async def save(
        self,
        tickets: Sequence[Ticket],
        applied: Sequence[CloudEvent[Any]],
        outbound: Sequence[OutboundMessage],
        *,
        grades: dict[str, str] | None = None,
        agents: Sequence[Agent] = (),
        pending: Sequence[PendingSurvey] = (),
        settled: Sequence[str] = (),
        erased: Sequence[str] = (),
    ) -> None:
        """One transaction: tickets (optimistic on `version`), grades, agents, inbox, outbox,
        and the erasure of `erased` customers (data keys destroyed, texts dropped)."""
        now = self.clock()
        ciphers = await self.keys.ciphers(
            (t.customer_id for t in tickets if t.customer_id not in erased), create=True
        )
        shredded = SHREDDED
        documents = [
            (to_document(t, now, self.rules, ciphers.get(t.customer_id, shredded)), t.version)
            for t in tickets
        ]
        async with self.uow.commit(applied, outbound) as session:
            await save_versioned(self.tickets, documents, session, what="ticket")
            if erased:
                await self.keys.destroy(erased, session=session)
                await self._drop_texts(erased, session)
            if grades:
                await self.customers.bulk_write(
                    [
                        UpdateOne({"_id": c}, {"$set": {"grade": g}}, upsert=True)
                        for c, g in grades.items()
                    ],
                    session=session,
                )
            for survey in pending:
                await self.pending.replace_one(
                    {"_id": survey.ticket_id},
                    {
                        "_id": survey.ticket_id,
                        "survey_id": survey.survey_id,
                        "csat": survey.csat,
                        "nps": survey.nps,
                        "at": survey.at,
                        "event_id": survey.event_id,
                    },
                    upsert=True,
                    session=session,
                )
            if settled:
                await self.pending.delete_many({"_id": {"$in": list(settled)}}, session=session)
            for agent in agents:
                await self.agents_.update_one(
                    {"_id": agent.agent_id},
                    {"$set": {"last_assigned_at": agent.last_assigned_at}},
                    session=session,
                )
        for ticket in tickets:
            ticket.version += 1

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
                    "$set": {"description": None, "comments": comments, "history": history},
                    "$inc": {"version": 1},
                },
                session=session,
            )

    # -- queries ------------------------------------------------------------------------------
    async def find(self, filters: dict[str, Any], after: str | None, limit: int) -> list[Document]:
        query = dict(filters)
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.tickets.find(
            query,
            {"history": 0, "comments": 0, "status_log": 0, "description": 0},
            sort=[("_id", ASCENDING)],
            limit=limit,
        )
        return [doc async for doc in cursor]

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
