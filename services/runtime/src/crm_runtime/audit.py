"""The audit trail of personal-data reads: who (`actor`, the user id; `token_id`, the token they
used; their roles), when, which customer, which route. Every route that returns a customer's
personal data records the read before answering; ops query the trail with `GET /audit/pii-reads`
(`?actor=<user id>`). Entries are kept `retention_days` (TTL index).
"""

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_runtime.auth import Principal
from crm_runtime.mongo import Document

RETENTION_DAYS = 400
"""Thirteen months: a year of look-back for a complaint about access, and a margin."""


class PiiAudit:
    def __init__(
        self, database: AsyncDatabase[Document], service: str, retention_days: int = RETENTION_DAYS
    ) -> None:
        self.collection: AsyncCollection[Document] = database["pii_reads"]
        self.service = service
        self.retention_days = retention_days

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("customer_id", DESCENDING), ("_id", DESCENDING)])
        await self.collection.create_index([("actor", DESCENDING), ("_id", DESCENDING)])
        await self.collection.create_index("at", expireAfterSeconds=self.retention_days * 86400)

    async def record(self, principal: Principal, route: str, customer_ids: Iterable[str]) -> None:
        """Record one read per customer; raises (and so refuses the read) if it cannot."""
        at = datetime.now(UTC)
        documents = [
            {
                # Sortable by time, unique: the cursor of the audit query.
                "_id": f"{at:%Y%m%dT%H%M%S.%f}-{uuid.uuid4().hex[:12]}",
                "at": at,
                "service": self.service,
                "actor": principal.user,
                "token_id": principal.token_id,
                "roles": sorted(principal.roles),
                "customer_id": customer_id,
                "route": route,
            }
            for customer_id in sorted(set(customer_ids))
        ]
        if documents:
            await self.collection.insert_many(documents)

    async def find(
        self,
        *,
        customer_id: str | None,
        actor: str | None,
        since: datetime | None,
        before_id: str | None,
        limit: int,
    ) -> list[Document]:
        """Newest first."""
        query: dict[str, Any] = {}
        if customer_id is not None:
            query["customer_id"] = customer_id
        if actor is not None:
            query["actor"] = actor
        if since is not None:
            query["at"] = {"$gte": since}
        if before_id is not None:
            query["_id"] = {"$lt": before_id}
        cursor = self.collection.find(query, sort=[("_id", DESCENDING)], limit=limit)
        return [doc async for doc in cursor]
