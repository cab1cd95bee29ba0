"""Preferences, notifications and digests in MongoDB (`crm_notify`).

`preferences` holds what we know of a customer for messaging (addresses: personal data);
`notifications` each message with its status history (`_id` derives from cause and template:
the unique key that makes a redelivered trigger send nothing more) and, while a delivery run
sends it, its `claim`; `digests` the points earned per customer and day until the digest goes
out. Batches, sweeps and commands save their `Changes` in one transaction with the inbox and the
outbox (`save`); the delivery worker claims a notification and saves its outcome under the claim
(`claim`, `handed_over`, `save_delivery`).
"""

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from pymongo import ASCENDING, DeleteOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from crm_contracts import CloudEvent
from crm_notify.domain.digest import LATEST_DAY_END, Digest
from crm_notify.domain.notification import Claim, Notification, StatusChange
from crm_notify.domain.policy import DEFAULT_TIME_ZONE, Preferences
from crm_notify.ports import Changes, NotificationSummary
from crm_runtime.crypto import SHREDDED, CustomerKeys, FieldCipher, KeyRing
from crm_runtime.documents import dataclass_from
from crm_runtime.errors import ConcurrencyConflictError
from crm_runtime.mongo import Document, find_by_ids, only_duplicate_keys, save_versioned
from crm_runtime.outbox import OutboundMessage
from crm_runtime.uow import UnitOfWork


def _month_day(month: int, day: int) -> str:
    return f"{month:02d}-{day:02d}"


def preferences_document(p: Preferences, cipher: FieldCipher, ring: KeyRing) -> Document:
    """Addresses, name and birthday sealed; the care sweep finds birthdays by a keyed hash."""
    return {
        "_id": p.customer_id,
        "name": cipher.seal("name", p.name),
        "email": cipher.seal("email", p.email),
        "phone": cipher.seal("phone", p.phone),
        "birthday": cipher.seal("birthday", p.birthday.isoformat() if p.birthday else None),
        "birthday_key": (
            ring.blind("birthday", _month_day(p.birthday.month, p.birthday.day))
            if p.birthday and not cipher.shredded
            else None
        ),
        "locale": p.locale,
        "time_zone": p.time_zone,
        "consents": p.consents,
        "opted_out": p.opted_out,
        "registered": p.registered,
        "version": p.version + 1,
    }


def preferences_from(doc: Document, cipher: FieldCipher) -> Preferences:
    birthday = cipher.open("birthday", doc.get("birthday"))
    return Preferences(
        customer_id=doc["_id"],
        name=cipher.open("name", doc.get("name")),
        email=cipher.open("email", doc.get("email")),
        phone=cipher.open("phone", doc.get("phone")),
        birthday=date.fromisoformat(birthday) if birthday else None,
        locale=doc.get("locale", "zh-CN"),
        time_zone=doc.get("time_zone", DEFAULT_TIME_ZONE),
        consents=doc.get("consents", {}),
        opted_out=list(doc.get("opted_out", [])),
        registered=doc.get("registered", False),
        version=doc.get("version", 0),
    )


def notification_document(n: Notification, cipher: FieldCipher) -> Document:
    """Address, subject and body sealed with the customer's key (a staff alert's too)."""
    return {
        "_id": n.notification_id,
        "customer_id": n.customer_id,
        "template": n.template,
        "purpose": n.purpose,
        "cause": n.cause,
        "created_at": n.created_at,
        "locale": n.locale,
        "channel": n.channel,
        "to": cipher.seal(f"{n.notification_id}/to", n.to),
        "subject": cipher.seal(f"{n.notification_id}/subject", n.subject),
        "body": cipher.seal(f"{n.notification_id}/body", n.body),
        **_delivery_fields(n),
        "trace": n.trace,
        "occurred_at": n.occurred_at,
        **(
            {"awaiting_until": n.awaiting_until, "variables": n.variables}
            if n.awaiting_until is not None
            else {}
        ),
        "version": n.version,
    }


def _claim_document(claim: Claim | None) -> Document | None:
    if claim is None:
        return None
    return {"token": claim.token, "until": claim.until, "handed_over_to": claim.handed_over_to}


def _claim(doc: Document | None) -> Claim | None:
    if not doc:
        return None
    return Claim(doc["token"], doc["until"], doc.get("handed_over_to"))


def notification_from(doc: Document, cipher: FieldCipher) -> Notification:
    return dataclass_from(
        Notification,
        doc,
        "notification_id",
        to=cipher.open(f"{doc['_id']}/to", doc.get("to")),
        subject=cipher.open(f"{doc['_id']}/subject", doc.get("subject")) or "",
        body=cipher.open(f"{doc['_id']}/body", doc.get("body")) or "",
        history=[StatusChange(h["at"], h["status"], h.get("reason")) for h in doc["history"]],
        claim=_claim(doc.get("claim")),
    )


class MongoNotifyRepository:
    def __init__(
        self, database: AsyncDatabase[Document], uow: UnitOfWork, keys: CustomerKeys
    ) -> None:
        self.keys = keys
        self.preferences_: AsyncCollection[Document] = database["preferences"]
        self.notifications: AsyncCollection[Document] = database["notifications"]
        self.digests_: AsyncCollection[Document] = database["digests"]
        self.uow = uow

    async def waiting_by_channel(self, statuses: Sequence[str]) -> dict[tuple[str, str], int]:
        """Notifications in `statuses`, by (channel, status); "none" before a channel is chosen."""
        pipeline: list[Document] = [
            {"$match": {"status": {"$in": list(statuses)}}},
            {"$group": {"_id": {"channel": "$channel", "status": "$status"}, "n": {"$sum": 1}}},
        ]
        result: dict[tuple[str, str], int] = {}
        async for row in await self.notifications.aggregate(pipeline):
            key = (str(row["_id"].get("channel") or "none"), str(row["_id"]["status"]))
            result[key] = result.get(key, 0) + int(row["n"])
        return result

    async def ensure_indexes(self) -> None:
        await self.notifications.create_index(
            [("status", ASCENDING), ("next_attempt_at", ASCENDING)]
        )
        await self.notifications.create_index(
            [("customer_id", ASCENDING), ("created_at", ASCENDING)]
        )
        await self.notifications.create_index([("status", ASCENDING), ("claim.until", ASCENDING)])
        await self.preferences_.create_index("birthday_key")
        await self.digests_.create_index("day")  # digests stored before `closes_at`
        await self.digests_.create_index("closes_at")

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        return await self.uow.unprocessed(events)

    async def _preferences_from(self, docs: list[Document]) -> list[Preferences]:
        ciphers = await self.keys.ciphers(doc["_id"] for doc in docs)
        return [preferences_from(doc, ciphers[doc["_id"]]) for doc in docs]

    async def _notifications_from(self, docs: list[Document]) -> list[Notification]:
        ciphers = await self.keys.ciphers(doc["customer_id"] for doc in docs)
        return [notification_from(doc, ciphers[doc["customer_id"]]) for doc in docs]

    async def preferences(self, customer_ids: Sequence[str]) -> dict[str, Preferences]:
        cursor = find_by_ids(self.preferences_, customer_ids)
        found = await self._preferences_from([doc async for doc in cursor])
        return {p.customer_id: p for p in found}

    async def standing(self, customer_ids: Sequence[str]) -> dict[str, Preferences]:
        sealed = {"name": 0, "email": 0, "phone": 0, "birthday": 0, "birthday_key": 0}
        cursor = find_by_ids(self.preferences_, customer_ids, sealed)
        return {doc["_id"]: preferences_from(doc, SHREDDED) async for doc in cursor}

    async def existing(self, notification_ids: Sequence[str]) -> set[str]:
        cursor = find_by_ids(self.notifications, notification_ids, {"_id": 1})
        return {doc["_id"] async for doc in cursor}

    async def counted_since(self, customer_id: str, since: datetime) -> int:
        return await self.notifications.count_documents(
            {
                "customer_id": customer_id,
                "created_at": {"$gte": since},
                "purpose": "marketing",
                "status": {"$ne": "suppressed"},
                "awaiting_until": None,  # not while it awaits the registration
            }
        )

    async def time_zones(self, customer_ids: Sequence[str]) -> dict[str, str]:
        cursor = find_by_ids(self.preferences_, customer_ids, {"time_zone": 1})
        return {doc["_id"]: doc.get("time_zone", DEFAULT_TIME_ZONE) async for doc in cursor}

    async def digests_closed(self, now: datetime, limit: int) -> list[Digest]:
        ended_everywhere = (now.astimezone(UTC) - LATEST_DAY_END).date()
        query = {
            "$or": [
                {"closes_at": {"$lte": now}},
                {"closes_at": {"$exists": False}, "day": {"$lte": ended_everywhere.isoformat()}},
            ]
        }
        cursor = self.digests_.find(query, limit=limit)
        return [_digest(doc) async for doc in cursor]

    async def with_birthday(self, month: int, day: int) -> list[Preferences]:
        days = [_month_day(month, day)]
        if (month, day) == (2, 28):
            days.append("02-29")  # celebrated on the 28th when the year has no 29th
        keys = [self.keys.ring.blind("birthday", d) for d in days]
        cursor = self.preferences_.find({"birthday_key": {"$in": keys}, "registered": True})
        return await self._preferences_from([doc async for doc in cursor])

    async def registered(self, after: str | None, limit: int) -> list[Preferences]:
        query: dict[str, Any] = {"registered": True}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.preferences_.find(query, sort=[("_id", ASCENDING)], limit=limit)
        return await self._preferences_from([doc async for doc in cursor])

    async def save(self, changes: Changes) -> None:
        """One transaction with the inbox and the outbox; erased customers' keys are destroyed,
        their messages redacted and their pending digests dropped. HTTP commands save through it
        too (`applied` empty)."""
        erased = set(changes.erased)
        ciphers = await self.keys.ciphers(
            {
                *changes.preferences,
                *(n.customer_id for n in _written(changes)),
            }
            - erased,
            create=True,
        )
        shredded = SHREDDED
        async with self.uow.commit(
            changes.applied, changes.outbound, unmarked=changes.unmarked
        ) as session:
            if changes.preferences:
                await self._save_preferences(list(changes.preferences.values()), ciphers, session)
            await save_versioned(
                self.notifications,
                [
                    (notification_document(n, ciphers.get(n.customer_id, shredded)), n.version)
                    for n in _written(changes)
                ],
                session,
                what="notification",
            )
            if changes.sent_digests:
                await self._delete_sent_digests(changes.sent_digests, session)
            if changes.digests:
                await self.digests_.bulk_write(
                    [_digest_addition(d) for d in changes.digests.values()],
                    ordered=False,
                    session=session,
                )
            if changes.erased:
                await self.keys.destroy(changes.erased, session=session)
                # Their pending points digests too: no digest message for them after all.
                await self.digests_.delete_many(
                    {"customer_id": {"$in": changes.erased}}, session=session
                )
                await self.notifications.update_many(
                    {"customer_id": {"$in": changes.erased}},
                    {
                        "$set": {"to": None, "subject": None, "body": None, "variables": None},
                        "$inc": {"version": 1},
                    },
                    session=session,
                )
        for p in changes.preferences.values():
            p.version += 1  # committed: what the caller holds is what is stored

    async def _save_preferences(
        self,
        preferences: Sequence[Preferences],
        ciphers: Mapping[str, FieldCipher],
        session: AsyncClientSession,
    ) -> None:
        """Each one only if still at the version read (version 0: not stored, or stored before
        preferences had versions): a writer that read an older version gets a conflict."""
        operations: list[ReplaceOne[Document]] = []
        for p in preferences:
            document = preferences_document(p, ciphers.get(p.customer_id, SHREDDED), self.keys.ring)
            if p.version == 0:
                unversioned = {"_id": p.customer_id, "version": {"$exists": False}}
                operations.append(ReplaceOne(unversioned, document, upsert=True))
            else:
                current = {"_id": p.customer_id, "version": p.version}
                operations.append(ReplaceOne(current, document))
        try:
            result = await self.preferences_.bulk_write(operations, session=session)
        except BulkWriteError as error:
            if only_duplicate_keys(error):  # the unversioned upsert met a versioned document
                raise ConcurrencyConflictError("preferences were created concurrently") from error
            raise
        if result.matched_count + result.upserted_count != len(operations):
            raise ConcurrencyConflictError("preferences were changed concurrently")

    async def _delete_sent_digests(
        self, digests: Sequence[Digest], session: AsyncClientSession
    ) -> None:
        """Each one only if still as the sweep read it: every addition raises `orders`, so a
        digest with points added since is not deleted (a conflict: the sweep is redone)."""
        operations = [
            DeleteOne({"_id": d.digest_id, "orders": d.orders, "points": d.points}) for d in digests
        ]
        result = await self.digests_.bulk_write(operations, session=session)
        if result.deleted_count != len(operations):
            raise ConcurrencyConflictError("points were added to a digest being sent")

    async def waiting(self, customer_ids: Sequence[str]) -> list[Notification]:
        cursor = self.notifications.find(
            {"customer_id": {"$in": list(customer_ids)}, "status": {"$in": ["queued", "deferred"]}}
        )
        return await self._notifications_from([doc async for doc in cursor])

    async def awaiting(self, customer_ids: Sequence[str]) -> list[Notification]:
        cursor = self.notifications.find(
            {
                "customer_id": {"$in": list(customer_ids)},
                "status": "deferred",
                "awaiting_until": {"$ne": None},
            }
        )
        return await self._notifications_from([doc async for doc in cursor])

    async def awaiting_over(self, now: datetime, limit: int) -> list[Notification]:
        """On the (status, next_attempt_at) index: awaiting ones are deferred with no send time."""
        cursor = self.notifications.find(
            {"status": "deferred", "next_attempt_at": None, "awaiting_until": {"$lte": now}},
            sort=[("awaiting_until", ASCENDING)],
            limit=limit,
        )
        return await self._notifications_from([doc async for doc in cursor])

    async def due_among(self, notification_ids: Sequence[str], now: datetime) -> list[Notification]:
        cursor = self.notifications.find(
            {
                "_id": {"$in": list(notification_ids)},
                "status": {"$in": ["queued", "deferred"]},
                "next_attempt_at": {"$lte": now},
            }
        )
        found = {doc["_id"]: doc async for doc in cursor}
        return await self._notifications_from([found[i] for i in notification_ids if i in found])

    async def due(self, now: datetime, lapsed: datetime, limit: int) -> list[Notification]:
        """Lapsed claims first (a run stopped mid-send), then what is due, oldest first."""
        stopped = self.notifications.find(
            {"status": "sending", "claim.until": {"$lte": lapsed}},
            sort=[("claim.until", ASCENDING)],
            limit=limit,
        )
        docs = [doc async for doc in stopped]
        if len(docs) < limit:
            # One equality per status, not `$in`: the embedded store bounds the scan of the
            # (status, next_attempt_at) index on `next_attempt_at` only after an equality, and
            # read every deferred message (quiet hours, awaiting a registration) at each
            # sweep otherwise (docs/performance.md, `benchmarks/notify_due.py`).
            due = {"$lte": now}
            cursor = self.notifications.find(
                {
                    "$or": [
                        {"status": "queued", "next_attempt_at": due},
                        {"status": "deferred", "next_attempt_at": due},
                    ]
                },
                sort=[("next_attempt_at", ASCENDING)],
                limit=limit - len(docs),
            )
            docs += [doc async for doc in cursor]
        return await self._notifications_from(docs)

    async def claim_all(
        self, notifications: Sequence[Notification], claim: Claim
    ) -> list[Notification]:
        """Compare-and-set on the version read, each in one bulk write: one run wins each, the
        others see no match. Only when some were not claimed are the claimed ones read back (by
        the claim's token)."""
        if not notifications:
            return []
        claiming = {
            "$set": {"status": "sending", "claim": _claim_document(claim)},
            "$inc": {"version": 1},
        }
        result = await self.notifications.bulk_write(
            [
                UpdateOne({"_id": n.notification_id, "version": n.version}, claiming)
                for n in notifications
            ],
            ordered=False,
        )
        claimed = list(notifications)
        if result.modified_count != len(notifications):
            cursor = self.notifications.find(
                {
                    "_id": {"$in": [n.notification_id for n in notifications]},
                    "claim.token": claim.token,
                },
                {"_id": 1},
            )
            ids = {doc["_id"] async for doc in cursor}
            claimed = [n for n in notifications if n.notification_id in ids]
        for n in claimed:
            n.version += 1
        return claimed

    async def handed_over(self, notification: Notification, claim: Claim, provider: str) -> None:
        """A new version: a run that read the claim before this cannot take it over."""
        await self.notifications.update_one(
            {"_id": notification.notification_id, "claim.token": claim.token},
            {"$set": {"claim.handed_over_to": provider}, "$inc": {"version": 1}},
        )

    async def save_deliveries(
        self,
        notifications: Sequence[Notification],
        claim: Claim,
        outbound: Sequence[OutboundMessage],
    ) -> None:
        """The delivery fields only, under the claim: an erasure that redacted a message
        meanwhile keeps it redacted, and a run whose claim was taken over changes nothing."""
        if not notifications:
            return
        async with self.uow.commit([], outbound) as session:
            result = await self.notifications.bulk_write(
                [
                    UpdateOne(
                        {"_id": n.notification_id, "claim.token": claim.token},
                        {"$set": _delivery_fields(n), "$inc": {"version": 1}},
                    )
                    for n in notifications
                ],
                ordered=False,
                session=session,
            )
            if result.matched_count != len(notifications):
                raise ConcurrencyConflictError(
                    f"{len(notifications) - result.matched_count} of {len(notifications)}"
                    " notifications: claim lost"
                )
        for n in notifications:
            n.version += 1

    # -- queries ------------------------------------------------------------------------------
    async def get(self, notification_id: str) -> Notification | None:
        doc = await self.notifications.find_one({"_id": notification_id})
        return (await self._notifications_from([doc]))[0] if doc else None

    async def find(
        self, filters: dict[str, Any], after: str | None, limit: int
    ) -> list[NotificationSummary]:
        query = dict(filters)
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.notifications.find(
            query, {"body": 0, "to": 0, "subject": 0}, sort=[("_id", ASCENDING)], limit=limit
        )
        return [
            dataclass_from(
                NotificationSummary,
                d,
                "id",
                channel=d.get("channel"),
                attempts=d.get("attempts", 0),
                reason=d["history"][-1].get("reason") if d.get("history") else None,
            )
            async for d in cursor
        ]


def _written(changes: Changes) -> list[Notification]:
    """The notifications a save writes: new, cancelled and released ones."""
    return [*changes.notifications, *changes.cancelled, *changes.released]


def _delivery_fields(n: Notification) -> Document:
    """What delivery changes: the status, its history, attempts and the claim."""
    return {
        "status": n.status,
        "history": [{"at": h.at, "status": h.status, "reason": h.reason} for h in n.history],
        "attempts": n.attempts,
        "next_attempt_at": n.next_attempt_at,
        "provider": n.provider,
        "claim": _claim_document(n.claim),
    }


def _digest_addition(added: Digest) -> UpdateOne:
    """Add a batch's points and orders to the stored digest (an upsert: no read first); the
    addition that makes it records when its day closes and the event that opened it."""
    made: Document = {"customer_id": added.customer_id, "day": added.day.isoformat()}
    if added.closes_at is not None:
        made["closes_at"] = added.closes_at
    if added.opened_by is not None:
        made["opened_by"] = added.opened_by
    return UpdateOne(
        {"_id": added.digest_id},
        {
            "$inc": {"points": added.points, "orders": added.orders},
            "$set": {"balance": added.balance},
            "$setOnInsert": made,
        },
        upsert=True,
    )


def _digest(doc: Document) -> Digest:
    return dataclass_from(Digest, doc, "digest_id", day=date.fromisoformat(doc["day"]))
