"""Customers in MongoDB (`crm_archive.customers`), saved with the batch's inbox and outbox."""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from crm_archive.domain.customer import Customer
from crm_contracts import CloudEvent
from crm_runtime.errors import ConcurrencyConflictError
from crm_runtime.mongo import Document, only_duplicate_keys
from crm_runtime.outbox import OutboundMessage
from crm_runtime.uow import UnitOfWork


def to_document(customer: Customer) -> Document:
    return {
        "_id": customer.id,
        "stage": customer.stage,
        "stub": customer.stub,
        "order_count": customer.order_count,
        "total_spent": Decimal128(customer.total_spent),
        "foreign_spent": {k: Decimal128(v) for k, v in customer.foreign_spent.items()},
        "first_order_at": customer.first_order_at,
        "last_order_at": customer.last_order_at,
        "created_at": customer.created_at,
        "updated_at": customer.updated_at,
        "version": customer.version,
    }


def _decimal(value: Any) -> Decimal:
    return value.to_decimal() if isinstance(value, Decimal128) else Decimal(value)


def from_document(doc: Document) -> Customer:
    return Customer(
        id=doc["_id"],
        stage=doc["stage"],
        stub=doc["stub"],
        order_count=doc["order_count"],
        total_spent=_decimal(doc["total_spent"]),
        foreign_spent={k: _decimal(v) for k, v in doc.get("foreign_spent", {}).items()},
        first_order_at=_aware(doc.get("first_order_at")),
        last_order_at=_aware(doc.get("last_order_at")),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        version=doc["version"],
    )


def _aware(value: datetime | None) -> datetime | None:
    return value


class MongoCustomerRepository:
    def __init__(self, database: AsyncDatabase[Document], uow: UnitOfWork) -> None:
        self.customers: AsyncCollection[Document] = database["customers"]
        self.uow = uow

    async def ensure_indexes(self) -> None:
        await self.customers.create_index("last_order_at")

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        return await self.uow.unprocessed(events)

    async def load(self, customer_ids: Sequence[str]) -> dict[str, Customer]:
        cursor = self.customers.find({"_id": {"$in": list(customer_ids)}})
        return {doc["_id"]: from_document(doc) async for doc in cursor}

    async def get(self, customer_id: str) -> Customer | None:
        doc = await self.customers.find_one({"_id": customer_id})
        return from_document(doc) if doc else None

    async def save(
        self,
        customers: Sequence[Customer],
        applied: Sequence[CloudEvent[Any]],
        outbound: Sequence[OutboundMessage],
    ) -> None:
        """One transaction: customers (optimistic on `version`), inbox marks, outbox events."""
        operations: list[InsertOne[Document] | UpdateOne] = []
        updates = 0
        for customer in customers:
            document = to_document(customer)
            document["version"] = customer.version + 1
            if customer.version == 0:
                operations.append(InsertOne(document))
            else:
                updates += 1
                operations.append(
                    UpdateOne({"_id": customer.id, "version": customer.version}, {"$set": document})
                )
        async with self.uow.commit(applied, outbound) as session:
            if not operations:
                return
            try:
                result = await self.customers.bulk_write(operations, ordered=True, session=session)
            except BulkWriteError as error:
                if only_duplicate_keys(error):
                    raise ConcurrencyConflictError("a customer was created concurrently") from error
                raise
            if result.matched_count != updates:
                raise ConcurrencyConflictError("a customer was changed concurrently")
