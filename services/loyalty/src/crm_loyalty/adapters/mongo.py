"""Accounts and the append-only ledger in MongoDB (`crm_loyalty`).

`accounts` holds each account's state (the lots that hold points, the orders of the window,
debt, tier) with a `version` for optimistic concurrency, plus the times the sweeps look for.
`orders_apart` holds the settled orders with their lots (`Account.compact`, ADR 0022), one
document each, `_id` = "<customer id> <order id>" (ids hold no white space). `ledger` is
append-only: one document per entry, `_id` = the entry id (derived from the source event id or
the idempotency key), so the same entry can never be written twice. All are written in one
transaction with the inbox and the outbox.
"""

from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING, DESCENDING, DeleteOne, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from crm_contracts import CloudEvent
from crm_loyalty import queries
from crm_loyalty.domain.account import Account
from crm_loyalty.domain.ledger import STAFF_TEXT_KINDS, Entry, Lot, OrderPoints
from crm_loyalty.domain.rules import LoyaltyRules
from crm_loyalty.ports import Changes
from crm_runtime.crypto import NO_KEY, SHREDDED, CustomerKeys, FieldCipher, KeyRing
from crm_runtime.documents import dataclass_from
from crm_runtime.errors import ConcurrencyConflictError
from crm_runtime.mongo import Document, find_by_ids, from_decimal128, save_versioned, to_decimal128
from crm_runtime.uow import UnitOfWork


def _decimal(value: Any) -> Decimal:
    return from_decimal128(value)


def _month_day(day: date) -> str:
    return f"{day.month:02d}-{day.day:02d}"


def to_document(
    account: Account, rules: LoyaltyRules, cipher: FieldCipher, ring: KeyRing
) -> Document:
    """The birthday is sealed; the birthday sweep finds accounts by a keyed hash of MM-DD."""
    return {
        "_id": account.customer_id,
        "opened_at": account.opened_at,
        "enrolled_at": account.enrolled_at,
        "tier": account.tier,
        "tier_since": account.tier_since,
        "tier_reviewed_at": account.tier_reviewed_at,
        "tier_review_due": account.tier_review_due,
        "debt": account.debt,
        "balance": account.balance,
        "birthday": cipher.seal(
            "birthday", account.birthday.isoformat() if account.birthday else None
        ),
        "birthday_key": (
            ring.blind("birthday", _month_day(account.birthday))
            if account.birthday and not cipher.shredded
            else None
        ),
        "birthday_years": account.birthday_years,
        "lots": [_lot_document(lot) for lot in account.lots],
        "orders": [_order_document(o) for o in account.orders.values()],
        "orders_apart": account.apart_after_save,
        "entry_count": account.entry_count,
        # When the sweeps should look at this account again.
        "next_expiry_at": account.next_expiry_at(),
        "next_notice_at": account.next_notice_at(rules),
        "tier_review_at": account.tier_review_at(rules),
        "version": account.version,
    }


def from_document(doc: Document, cipher: FieldCipher) -> Account:
    return Account(
        customer_id=doc["_id"],
        opened_at=doc["opened_at"],
        enrolled_at=doc.get("enrolled_at"),
        tier=doc["tier"],
        tier_since=doc.get("tier_since"),
        tier_reviewed_at=doc.get("tier_reviewed_at"),
        tier_review_due=doc.get("tier_review_due"),
        lots=[_lot(lot) for lot in doc.get("lots", [])],
        orders={o["id"]: _order(o) for o in doc.get("orders", [])},
        debt=doc.get("debt", 0),
        birthday=_date(cipher.open("birthday", doc.get("birthday"))),
        birthday_years=list(doc.get("birthday_years", [])),
        entry_count=doc.get("entry_count", 0),
        orders_apart=doc.get("orders_apart", 0),
        version=doc["version"],
    )


def _lot_document(lot: Lot) -> Document:
    return {
        "id": lot.lot_id,
        "kind": lot.kind,
        "earned_at": lot.earned_at,
        "expires_at": lot.expires_at,
        "expiry_month": lot.expires_at.strftime("%Y-%m"),
        "points": lot.points,
        "remaining": lot.remaining,
        "order_id": lot.order_id,
        "expired": lot.expired,
        "reversed": lot.reversed,
        "notified": lot.notified,
    }


def _lot(doc: Document) -> Lot:
    return dataclass_from(Lot, doc, "lot_id", id_key="id")


def _order_document(order: OrderPoints) -> Document:
    return {
        "id": order.order_id,
        "placed_at": order.placed_at,
        "amount": to_decimal128(order.amount),
        "points": order.points,
        "refunded": to_decimal128(order.refunded),
        "reversed": order.reversed,
        "cancelled": order.cancelled,
        "refunds": order.refunds,
    }


def _order(doc: Document) -> OrderPoints:
    return dataclass_from(
        OrderPoints,
        doc,
        "order_id",
        id_key="id",
        placed_at=doc.get("placed_at"),
        amount=_decimal(doc["amount"]),
        refunded=_decimal(doc["refunded"]),
        refunds=list(doc.get("refunds", [])),
    )


def apart_id(customer_id: str, order_id: str) -> str:
    return f"{customer_id} {order_id}"


def apart_document(customer_id: str, order: OrderPoints, lot: Lot | None) -> Document:
    return {
        "_id": apart_id(customer_id, order.order_id),
        "customer_id": customer_id,
        "order": _order_document(order),
        "lot": _lot_document(lot) if lot is not None else None,
    }


def _apart_operations(account: Account) -> list[ReplaceOne[Document] | DeleteOne]:
    """What a save writes to `orders_apart` for an account: the orders `compact` settled, and
    the deletion of those recalled that stay in the account (a refund's stub now placed)."""
    customer_id = account.customer_id
    put: list[ReplaceOne[Document] | DeleteOne] = [
        ReplaceOne(
            {"_id": apart_id(customer_id, order_id)},
            apart_document(customer_id, order, lot),
            upsert=True,
        )
        for order_id, (order, lot) in account.settled.items()
    ]
    back = sorted(account.recalled - set(account.settled))
    return put + [DeleteOne({"_id": apart_id(customer_id, order_id)}) for order_id in back]


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def entry_document(entry: Entry, cipher: FieldCipher) -> Document:
    """An adjustment's reason is free text typed by staff: sealed (after erasure the figures
    stay)."""
    return {
        "_id": entry.entry_id,
        "customer_id": entry.customer_id,
        "seq": entry.seq,
        "kind": entry.kind,
        "points": entry.points,
        "at": entry.at,
        "balance": entry.balance,
        "debt": entry.debt,
        "lots": [{"lot": lot, "points": points} for lot, points in entry.lots.items()],
        "order_id": entry.order_id,
        "redemption_id": entry.redemption_id,
        "reason": (
            cipher.seal(f"{entry.entry_id}/reason", entry.reason)
            if entry.kind in STAFF_TEXT_KINDS
            else entry.reason  # a fixed word: refund, cancellation, welcome, birthday
        ),
        "expires_at": entry.expires_at,
        "source_event_id": entry.source_event_id,
    }


def _entry(doc: Document) -> Entry:
    return dataclass_from(
        Entry,
        doc,
        "entry_id",
        debt=doc.get("debt", 0),
        lots={row["lot"]: row["points"] for row in doc.get("lots", [])},
    )


class MongoAccountRepository:
    def __init__(
        self,
        database: AsyncDatabase[Document],
        uow: UnitOfWork,
        rules: LoyaltyRules,
        keys: CustomerKeys,
    ):
        self.keys = keys
        self.accounts: AsyncCollection[Document] = database["accounts"]
        self.apart: AsyncCollection[Document] = database["orders_apart"]
        self.ledger: AsyncCollection[Document] = database["ledger"]
        self.uow = uow
        self.rules = rules

    async def points_held(self) -> tuple[int, dict[str, int]]:
        """Points held (the sum of positive balances) and accounts by tier."""
        total = 0
        held: list[Document] = [
            {"$match": {"balance": {"$gt": 0}}},
            {"$group": {"_id": None, "points": {"$sum": "$balance"}}},
        ]
        async for row in await self.accounts.aggregate(held):
            total = int(row["points"])
        tiers = {
            str(row["_id"]): int(row["n"])
            async for row in await self.accounts.aggregate(
                [{"$group": {"_id": "$tier", "n": {"$sum": 1}}}]
            )
        }
        return total, tiers

    async def ensure_indexes(self) -> None:
        for key in ("next_expiry_at", "next_notice_at", "tier_review_at", "birthday_key"):
            await self.accounts.create_index(key)
        await self.ledger.create_index(
            [("customer_id", ASCENDING), ("seq", DESCENDING)], unique=True
        )

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        return await self.uow.unprocessed(events)

    async def load(
        self,
        customer_ids: Sequence[str],
        orders: Mapping[str, Collection[str]] | None = None,
    ) -> dict[str, Account]:
        """The accounts, with the orders kept apart that `orders` names (by customer) brought
        back: one more query for the batch, only when an account named keeps some apart."""
        cursor = find_by_ids(self.accounts, customer_ids)
        docs = [doc async for doc in cursor]
        ciphers = await self.keys.ciphers(doc["_id"] for doc in docs if doc.get("birthday"))
        accounts = {doc["_id"]: from_document(doc, ciphers.get(doc["_id"], NO_KEY)) for doc in docs}
        wanted = [
            apart_id(customer_id, order_id)
            for customer_id, order_ids in (orders or {}).items()
            if (account := accounts.get(customer_id)) is not None and account.orders_apart > 0
            for order_id in order_ids
            if order_id not in account.orders
        ]
        if wanted:
            async for doc in find_by_ids(self.apart, wanted):
                lot = _lot(doc["lot"]) if doc.get("lot") else None
                accounts[doc["customer_id"]].recall(_order(doc["order"]), lot)
        return accounts

    async def exists(self, customer_id: str) -> bool:
        return await self.accounts.find_one({"_id": customer_id}, {"_id": 1}) is not None

    async def get(self, customer_id: str) -> Account | None:
        return (await self.load([customer_id])).get(customer_id)

    async def due(self, sweep: str, now: datetime, limit: int) -> list[str]:
        query: dict[str, Any]
        if sweep == "expiry":
            query = {"$or": [{"next_expiry_at": {"$lte": now}}, {"next_notice_at": {"$lte": now}}]}
        elif sweep == "tiers":
            query = {"tier_review_at": {"$lte": now}}
        elif sweep == "birthdays":
            days = [_month_day(now.date())]
            if (now.month, now.day) == (2, 28) and self.rules.is_birthday(
                date(2000, 2, 29), now.date()
            ):
                days.append("02-29")
            keys = [self.keys.ring.blind("birthday", day) for day in days]
            query = {"birthday_key": {"$in": keys}, "birthday_years": {"$ne": now.year}}
        else:
            raise ValueError(f"no sweep {sweep!r}")
        cursor = self.accounts.find(query, {"_id": 1}, sort=[("_id", ASCENDING)], limit=limit)
        return [doc["_id"] async for doc in cursor]

    async def save(self, changes: Changes) -> None:
        """One transaction: accounts (optimistic on `version`), ledger, inbox, outbox, and the
        erasure of the `erased` customers (data keys destroyed, reasons dropped)."""
        accounts, entries, erased = changes.accounts, changes.entries, changes.erased
        # Keys only for what has something to seal: most accounts and entries have nothing.
        sealing = {a.customer_id for a in accounts if a.birthday is not None} | {
            e.customer_id for e in entries if e.kind in STAFF_TEXT_KINDS and e.reason is not None
        }
        ciphers = await self.keys.ciphers(sealing - set(erased), create=True)

        def cipher(customer_id: str) -> FieldCipher:
            return SHREDDED if customer_id in erased else ciphers.get(customer_id, NO_KEY)

        ring = self.keys.ring
        for account in accounts:
            account.compact(self.rules)
        documents = [
            (to_document(a, self.rules, cipher(a.customer_id), ring), a.version) for a in accounts
        ]
        apart = [operation for a in accounts for operation in _apart_operations(a)]
        async with self.uow.commit(
            changes.applied, changes.outbound, unmarked=changes.unmarked
        ) as session:
            await save_versioned(self.accounts, documents, session, what="account")
            if apart:
                await self.apart.bulk_write(apart, ordered=False, session=session)
            if erased:
                await self.keys.destroy(erased, session=session)
                await self.ledger.update_many(
                    {
                        "customer_id": {"$in": list(erased)},
                        "kind": {"$in": sorted(STAFF_TEXT_KINDS)},
                    },
                    {"$set": {"reason": None}},
                    session=session,
                )
            if entries:
                try:
                    await self.ledger.insert_many(
                        [entry_document(e, cipher(e.customer_id)) for e in entries],
                        ordered=True,
                        session=session,
                    )
                except BulkWriteError as error:
                    raise ConcurrencyConflictError("a ledger entry exists already") from error
        for account in accounts:
            account.saved()

    # -- queries ------------------------------------------------------------------------------
    async def ledger_page(
        self, customer_id: str, before_seq: int | None, limit: int
    ) -> list[Entry]:
        query: dict[str, Any] = {"customer_id": customer_id}
        if before_seq is not None:
            query["seq"] = {"$lt": before_seq}
        cursor = self.ledger.find(query, sort=[("seq", DESCENDING)], limit=limit)
        return [_entry(doc) for doc in await self._opened([doc async for doc in cursor])]

    async def entry(self, entry_id: str) -> Entry | None:
        doc = await self.ledger.find_one({"_id": entry_id})
        return _entry((await self._opened([doc]))[0]) if doc else None

    async def _opened(self, entries: list[Document]) -> list[Document]:
        """Ledger documents with their staff-typed reasons opened."""
        sealed = [doc for doc in entries if doc["kind"] in STAFF_TEXT_KINDS]
        ciphers = await self.keys.ciphers(doc["customer_id"] for doc in sealed)
        return [
            {
                **doc,
                "reason": ciphers[doc["customer_id"]].open(
                    f"{doc['_id']}/reason", doc.get("reason")
                ),
            }
            if doc["kind"] in STAFF_TEXT_KINDS
            else doc
            for doc in entries
        ]

    async def liability(self, now: datetime) -> Document:
        """Outstanding points by expiry month, and the recorded debt: grouped in the database."""
        accounts = [row async for row in await self.accounts.aggregate(queries.accounts_pipeline())]
        months = [row async for row in await self.accounts.aggregate(queries.lots_pipeline(now))]
        return queries.liability_report(accounts, months)
