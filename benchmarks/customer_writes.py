"""What writing a customer record costs the store, by how it is written and which indexes it keeps
(issue #16; `docs/performance.md`, "Replace or update").

    python benchmarks/customer_writes.py [--customers 12000] [--rounds 6]

Starts a private SecantusDB (the Rust server, as `make up`) and fills one collection per way of
writing with the same customers, made by the archive's domain and stored by its `to_document`
(sealed, with their keyed lookups), so that each collection's records grow alike. Each keeps the
archive's indexes (`finding.INDEXES`), or all but the single `grade` and `stage` indexes (the
first key of compound ones), or all but the six lanes: the (stage or grade, sort key, id) indexes
that the sorted lists of one stage or grade walk (`census.py`). Then, after one round not
counted, in rounds whose order alternates, 300 customers in one transaction each time, it writes:

- after one more order each (what the archive's batches of orders do): the whole record replaced,
  as `save_versioned` writes it (without its read of the versions); the fields that differ from
  the stored record `$set`; the whole record replaced where the two single indexes, or the six
  lanes, are left out;
- after one more call-center contact each (`log_contact`: the count and the last event's time,
  no indexed field; the record is not evaluated again): replaced, and `$set`.

Prints the store's CPU per record written (µs) for each way, the mean and the range of the rounds.
"""

import argparse
import asyncio
import os
import random
import statistics
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from archive_search import make_customer
from benchutil import cpu_seconds, print_table, private_store
from pymongo import AsyncMongoClient, IndexModel, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from crm_archive.adapters.documents import to_document
from crm_archive.adapters.finding import INDEXES
from crm_archive.domain.customer import Customer
from crm_archive.domain.rules import DEFAULT_RULES
from crm_runtime.crypto import FieldCipher, KeyRing

Document = dict[str, Any]
SLICE = 300
Way = Literal["replace", "set"]
SINGLES = (["grade"], ["stage"])
LANES = ("stage", "grade")


def is_lane(index: IndexModel) -> bool:
    """A (stage or grade, sort key, id) index, which a sorted list of one stage or grade walks."""
    keys = list(index.document["key"])
    return len(keys) == 3 and keys[0] in LANES and keys[2] == "_id"


RING = KeyRing({"k1": os.urandom(32)}, "k1", os.urandom(32))


class Records:
    """One collection's customers: the domain's objects and the documents last stored."""

    def __init__(self, collection: AsyncCollection[Document], made: list[Customer]) -> None:
        self.collection = collection
        self.customers = {c.id: c for c in made}
        self.ciphers = {c.id: FieldCipher(c.id, os.urandom(32)) for c in made}
        self.stored = {c.id: self.document(c) for c in made}

    def document(self, customer: Customer) -> Document:
        return to_document(customer, self.ciphers[customer.id], RING)


def changed_fields(before: Document, after: Document) -> Document:
    """The top-level fields of `after` that differ from `before` (the sealed profile always does:
    each sealing draws a new nonce)."""
    return {name: value for name, value in after.items() if before.get(name) != value}


async def write(
    client: AsyncMongoClient[Document],
    records: Records,
    ids: list[str],
    change: Callable[[Customer], None],
    way: Way,
) -> None:
    """Change the customers `ids` and write them in one transaction, replaced or `$set`."""
    operations: list[ReplaceOne[Document] | UpdateOne] = []
    for customer_id in ids:
        customer = records.customers[customer_id]
        change(customer)
        customer.saved()  # one version up, as `save_versioned` stores it
        after = records.document(customer)
        if way == "replace":
            operations.append(ReplaceOne({"_id": customer_id}, after))
        else:
            fields = changed_fields(records.stored[customer_id], after)
            operations.append(UpdateOne({"_id": customer_id}, {"$set": fields}))
        records.stored[customer_id] = after
    async with client.start_session() as session, await session.start_transaction():
        await records.collection.bulk_write(operations, ordered=False, session=session)


async def run(url: str, pid: int, customers: int, rounds: int) -> list[tuple[str, ...]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(url, tz_aware=True)
    database = client["customer_writes"]
    now = datetime.now(UTC)
    without_singles = [i for i in INDEXES if list(i.document["key"]) not in SINGLES]
    without_lanes = [i for i in INDEXES if not is_lane(i)]
    assert len(INDEXES) - len(without_lanes) == 6, "the archive's six lanes"

    async def made(name: str, indexes: list[IndexModel]) -> Records:
        """The same customers in each collection, stored, with `indexes`."""
        rng = random.Random(16)
        people = [make_customer(n, rng, now).customer for n in range(customers)]
        records = Records(database[name], people)
        await records.collection.create_indexes(indexes)
        docs = list(records.stored.values())
        for start in range(0, len(docs), 1000):
            await records.collection.insert_many(docs[start : start + 1000])
        return records

    counter = 0

    def one_more_order(customer: Customer) -> None:
        nonlocal counter
        counter += 1
        at = now + timedelta(seconds=counter)
        customer.place_order(f"{customer.id}-x{counter}", at, Decimal("88.50"), "CNY")
        customer.evaluate(at, DEFAULT_RULES)

    def one_more_contact(customer: Customer) -> None:
        nonlocal counter
        counter += 1
        customer.log_contact(now + timedelta(seconds=counter))

    contacted = await made("contacts", INDEXES)  # the count grows; the record's size does not
    ways: list[tuple[str, Records, Callable[[Customer], None], Way]] = [
        (
            "after an order: replaced (the archive's indexes)",
            await made("replaced", INDEXES),
            one_more_order,
            "replace",
        ),
        ("after an order: changed fields $set", await made("set", INDEXES), one_more_order, "set"),
        (
            "after an order: replaced, without grade_1, stage_1",
            await made("without_singles", without_singles),
            one_more_order,
            "replace",
        ),
        (
            "after an order: replaced, without the six lanes",
            await made("without_lanes", without_lanes),
            one_more_order,
            "replace",
        ),
        ("after a contact (no indexed field): replaced", contacted, one_more_contact, "replace"),
        ("after a contact (no indexed field): $set", contacted, one_more_contact, "set"),
    ]
    ids = sorted(contacted.customers)
    slices = random.Random(7)
    figures: dict[str, list[float]] = {name: [] for name, *_ in ways}
    for round_ in range(rounds + 1):  # the first is not counted: the store settles after the load
        order = ways if round_ % 2 == 0 else list(reversed(ways))
        for name, records, change, way in order:
            before = cpu_seconds(pid)
            for _ in range(10):
                start = slices.randrange(0, len(ids) - SLICE)
                await write(client, records, ids[start : start + SLICE], change, way)
            if round_ > 0:
                figures[name].append((cpu_seconds(pid) - before) * 1e6 / (10 * SLICE))
        print(f"  round {round_} of {rounds}{' (not counted)' if round_ == 0 else ''}", flush=True)
    await client.close()
    return [
        (
            name,
            f"{statistics.mean(values):,.0f}",
            f"{min(values):,.0f}–{max(values):,.0f}",
        )
        for name, values in figures.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=12000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with private_store("crm-customer-writes-") as (url, pid):
        load = os.getloadavg()[0]
        rows = asyncio.run(run(url, pid, args.customers, args.rounds))
        print_table(
            f"store CPU per customer record written, {SLICE} a transaction, {args.rounds} rounds "
            f"(load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)",
            ("write", "CPU µs / record (mean)", "range of the rounds"),
            rows,
        )


if __name__ == "__main__":
    main()
