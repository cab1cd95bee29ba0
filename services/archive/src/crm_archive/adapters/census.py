"""A sorted page that costs what it holds, on a store that reads every match before it sorts.

SecantusDB answers a `find` by reading every document its index range holds, then sorting and
cutting to the limit (`docs/performance.md`, "Finding customers"): `stage=loyal&sort=-rfm`
read 33,000 documents for a page of 50. So a descending sorted list broadly filtered is read
instead in *chunks of the sort order*: pieces of the (sort key, `_id`) index, each bounded on
both sides, each read with the criteria and the page's limit, in order, until the page is full.

Where a chunk ends comes from a `Census` of the customers, taken by the repository now and then
(a sample of each sort key's (value, id) positions and how many customers hold each value of
each counted criterion). The census only sizes the chunks and picks the way: the rows are the
ones the criteria and the order give, whatever the census says, because the chunks follow one
another without gap or overlap in the list's own order (value, then id), starting where the
previous page ended. A stale census costs time, never a row.

The way is picked by cost, in documents the store reads: the criteria's own index reads every
customer its first criterion matches; the walk reads about `limit / selectivity` (selectivity
estimated from the census, assuming the criteria independent). After each chunk the matches
found so far size the next one; when they say the rest of the page would cost more than the
criteria's index (criteria that hold few of the top of the list: `stage=at_risk&sort=-rfm`),
the rest is read through that index, after the last chunk.
"""

import random
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from math import ceil
from typing import Any, TypeVar

from bson.decimal128 import Decimal128

from crm_archive.adapters.finding import continued
from crm_archive.ports import After, CustomerSort
from crm_runtime.mongo import Document

Row = TypeVar("Row")
SortValue = Decimal | datetime | int
Position = tuple[SortValue, str]
"""A place in a sorted list: a sort value and a customer id."""

SORT_FIELDS = ("net_spent", "last_order_at", "rfm")
COUNTED = (
    "lookup.city",
    "account_owner",
    "tags",
    "stage",
    "grade",
    "at_risk",
    "agreement_customer",
)
"""The equality criteria whose values the census counts, as `finding.customer_query` names them."""
CENSUS_FIELDS: Document = {name: 1 for name in (*SORT_FIELDS, *COUNTED)}
"""What the census reads of each customer document (no personal data: `lookup.city` is a
keyed hash)."""
SAMPLE = 20_000
"""At most this many (value, id) positions kept per sort key while the census reads."""
MARKS = 1_000
"""Positions kept per sort key: a chunk ends at one of them."""
SAFETY = 1.5
"""A first chunk this much larger than the estimate says a page needs."""
LANES = ("stage", "grade")
"""Criteria with a (criterion, sort key, id) index (`finding.INDEXES`): a list asking for one of
their values walks that value's own order. They follow the figures the list is sorted by (the
top of `-rfm` is loyal, hardly active or at risk), so the whole order would be walked long
before a page of active customers is found."""
Lane = tuple[str, Hashable, str]
"""A criterion, its value and a sort key: the customers with that value, in that key's order."""


@dataclass(frozen=True)
class Census:
    """How the customers spread, for sizing chunks: `marks[field]` holds positions of that sort
    key, ascending, about `step[field]` customers apart; `counts` how many customers hold each
    value of a counted criterion (a tag counts once per customer holding it)."""

    total: int
    marks: Mapping[str, Sequence[Position]]
    step: Mapping[str, float]
    counts: Mapping[tuple[str, Hashable], int]
    lanes: Mapping[Lane, Sequence[Position]] = field(default_factory=dict)
    lane_step: Mapping[Lane, float] = field(default_factory=dict)
    """The same for the customers holding one value of a `LANES` criterion."""


@dataclass
class CensusTaker:
    """Reads customer documents one by one (`CENSUS_FIELDS`) into a `Census`, keeping a
    bounded sample of positions (`SAMPLE`) whatever the number of customers."""

    expected: int
    rng: random.Random = field(default_factory=random.Random)
    seen: int = 0
    kept: int = 0
    positions: dict[str, list[Position]] = field(
        default_factory=lambda: {f: [] for f in SORT_FIELDS}
    )
    counts: Counter[tuple[str, Hashable]] = field(default_factory=Counter)
    lanes: dict[Lane, list[Position]] = field(default_factory=dict)

    def add(self, doc: Document) -> None:
        self.seen += 1
        for name in COUNTED:
            value = (
                (doc.get("lookup") or {}).get("city") if name == "lookup.city" else doc.get(name)
            )
            if isinstance(value, list):
                self.counts.update((name, v) for v in set(value) if isinstance(v, Hashable))
            elif isinstance(value, Hashable) and value is not None:
                self.counts[(name, value)] += 1
        if self.rng.random() * max(self.expected, 1) >= SAMPLE:
            return
        self.kept += 1
        for name in SORT_FIELDS:
            value = sort_value(doc.get(name))
            if value is None:
                continue
            self.positions[name].append((value, str(doc["_id"])))
            for lane in LANES:
                if isinstance(held := doc.get(lane), str):
                    self.lanes.setdefault((lane, held, name), []).append((value, str(doc["_id"])))

    def census(self) -> Census:
        per_kept = self.seen / self.kept if self.kept else 1.0
        marks: dict[str, list[Position]] = {}
        step: dict[str, float] = {}
        for name, positions in self.positions.items():
            marks[name], step[name] = _marks(positions, per_kept)
        lanes: dict[Lane, list[Position]] = {}
        lane_step: dict[Lane, float] = {}
        for lane, positions in self.lanes.items():
            lanes[lane], lane_step[lane] = _marks(positions, per_kept)
        return Census(self.seen, marks, step, dict(self.counts), lanes, lane_step)


def _marks(positions: list[Position], per_kept: float) -> tuple[list[Position], float]:
    """About `MARKS` of `positions`, in order, and how many customers apart they are."""
    positions.sort()
    every = max(1, ceil(len(positions) / MARKS))
    return positions[every - 1 :: every], every * per_kept


def sort_value(value: object) -> SortValue | None:
    """A stored sort value as Python compares it (a Decimal128 as a Decimal)."""
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, Decimal | datetime) or (
        isinstance(value, int) and not isinstance(value, bool)
    ):
        return value
    return None


def stored(value: SortValue) -> object:
    return Decimal128(value) if isinstance(value, Decimal) else value


# -- the way ---------------------------------------------------------------------------------
def estimate(criteria: Document, census: Census) -> tuple[float, int] | None:
    """The share of customers `criteria` (`finding.customer_query`) match, and how many
    documents the store reads through the criteria's first index; None when a criterion is one
    the census does not count (a name, phone or e-mail: those are narrow by nature)."""
    share, first = 1.0, None
    for name, wanted in criteria.items():
        if name in ("net_spent", "last_order_at"):
            part = routed = _range_share(census, name, wanted)
        elif name == "pii.type":
            share *= 1.0  # neither indexed nor counted: it filters what the rest read
            continue
        elif name == "tags" and isinstance(wanted, dict) and "$all" in wanted:
            parts = [_share(census, "tags", tag) for tag in wanted["$all"]]
            part, routed = _product(parts), parts[0] if parts else 1.0
        elif name in COUNTED and isinstance(wanted, Hashable) and not isinstance(wanted, dict):
            part = routed = _share(census, name, wanted)
        else:
            return None
        share *= part
        if first is None:
            first = ceil(routed * census.total)
    return share, census.total if first is None else first


def _share(census: Census, name: str, value: Hashable) -> float:
    return census.counts.get((name, value), 0) / max(census.total, 1)


def _product(parts: list[float]) -> float:
    out = 1.0
    for part in parts:
        out *= part
    return out


def _range_share(census: Census, name: str, wanted: object) -> float:
    """The share of customers whose `name` lies in the range `wanted` (`{$gte: ..., $lt: ...}`)."""
    marks = census.marks.get(name) or []
    if not marks or not isinstance(wanted, dict):
        return 1.0
    values: list[Any] = [value for value, _ in marks]
    low, high = 0, len(values)
    for op, stored_bound in wanted.items():
        bound = sort_value(stored_bound)
        if bound is None:
            continue
        if op == "$gte":
            low = max(low, bisect_left(values, bound))
        elif op == "$gt":
            low = max(low, bisect_right(values, bound))
        elif op == "$lte":
            high = min(high, bisect_right(values, bound))
        elif op == "$lt":
            high = min(high, bisect_left(values, bound))
    held = len(values) * census.step.get(name, 1.0) / max(census.total, 1)
    return held * max(0, high - low) / len(values)


@dataclass(frozen=True)
class Walk:
    """A descending sorted list read in chunks of its order: `first` marks (each about `step`
    customers) in the first chunk, the next ones sized by the matches found so far, until the
    walk would read more than `budget` documents (what the criteria's index reads)."""

    field: str
    marks: Sequence[Position]
    step: float
    first: int
    budget: int
    lane: Document | None = None
    """The `LANES` criterion walked with the sort key (`{"stage": "active"}`), if any."""

    def lower(self, upper: Position | None, size: int) -> Position | None:
        """Where a chunk of `size` marks below `upper` (excluded; None: the top) ends, or None
        past the last mark."""
        above = len(self.marks) if upper is None else bisect_left(self.marks, upper)
        return self.marks[above - size] if above - size >= 0 else None

    def next_size(self, read: float, found: int, limit: int) -> int | None:
        """Marks in the next chunk, after `read` documents gave `found` rows of `limit`: enough
        for the rest at the rate seen; None when the rest would cost more than the budget."""
        needed = (limit - found) * read / (found + 1)
        if read + needed > self.budget:
            return None
        return max(1, ceil(needed * SAFETY / self.step))


def plan(
    criteria: Document,
    sort: CustomerSort,
    after: After | None,
    limit: int,
    census: Census | None,
) -> Walk | None:
    """A walk for a descending sorted list whose criteria match broadly enough that reading the
    sort order in chunks costs less than reading every match; else None (the criteria's index,
    also for a page continuing among the customers without the value, which come last)."""
    if census is None or sort.field is None or not sort.descending or census.total == 0:
        return None
    if after is not None and after.value is None:
        return None
    marks = census.marks.get(sort.field) or []
    step = census.step.get(sort.field, 1.0)
    estimated = estimate(criteria, census)
    if not marks or estimated is None:
        return None
    share, through_criteria = estimated
    if share * census.total < limit:
        return None  # fewer matches than a page: the criteria's index reads them all cheaply
    lane: Document | None = None
    held = [(n, criteria[n]) for n in LANES if isinstance(criteria.get(n), str)]
    if held:  # the narrowest one's own order: only its customers are read
        name, value = min(held, key=lambda nv: census.counts.get(nv, 0))
        key = (name, value, sort.field)
        marks, step, lane = (
            census.lanes.get(key) or [],
            census.lane_step.get(key, 1.0),
            {name: value},
        )
        share /= max(census.counts.get((name, value), 0) / census.total, 1 / census.total)
        if not marks:
            return None
    first = max(1, ceil(limit / share * SAFETY / step))
    if first * step >= through_criteria:
        return None
    return Walk(sort.field, marks, step, first, through_criteria, lane)


def start_of(after: After | None) -> Position | None:
    """Where a walk starts: the top (None) or the previous page's last row, which had a value
    (`plan` walks no list continuing past its customers without one)."""
    if after is None or after.value is None:
        return None
    return (after.value, after.id)


def pieces(
    name: str, upper: Position | None, lower: Position, lane: Document | None = None
) -> list[Document]:
    """The customers below `upper` (excluded; None: from the top) down to `lower` (included), in
    descending (value, id) order, as conditions each bounded on one index: a stretch of one
    value's ids is a range of the (value, id) index, values between are a range of its first
    column. Each holds at most the customers between the two positions. With a `lane`
    (`{"stage": "active"}`), the same ranges after it, of the (lane, value, id) index."""
    return [{**(lane or {}), **piece} for piece in _ranges(name, upper, lower)]


def _ranges(name: str, upper: Position | None, lower: Position) -> list[Document]:
    low_value, low_id = lower
    if upper is None:
        return [
            {name: {"$gt": stored(low_value)}},
            {name: stored(low_value), "_id": {"$gte": low_id}},
        ]
    high_value, high_id = upper
    if high_value == low_value:
        return [{name: stored(high_value), "_id": {"$lt": high_id, "$gte": low_id}}]
    return [
        {name: stored(high_value), "_id": {"$lt": high_id}},
        {name: {"$lt": stored(high_value), "$gt": stored(low_value)}},
        {name: stored(low_value), "_id": {"$gte": low_id}},
    ]


def piece_query(piece: Document, criteria: Document) -> Document:
    """A piece with the criteria. The criteria go in a nested `$and` so the store routes the
    read through the piece (its first routable conjunct) and only filters by the criteria."""
    return {"$and": [piece, {"$and": [criteria]}]} if criteria else piece


async def walked(
    walk: Walk,
    criteria: Document,
    sort: CustomerSort,
    after: After | None,
    limit: int,
    read: Callable[[Document, int], Awaitable[list[Row]]],
) -> list[Row]:
    """The page `walk` reads: each chunk's pieces in order with the criteria (`read(query,
    limit)` answers a query sorted by `sort`), until `limit` rows. When the matches found so
    far say the rest would cost more than the budget, or past the last mark, the rest is read
    through the criteria's index, after the last chunk's end."""
    if after is not None and after.value is None:  # among those without a value, which come last
        return await read(continued(criteria, sort, after), limit)
    rows: list[Row] = []
    upper, size, read_so_far = start_of(after), walk.first, 0.0
    while (lower := walk.lower(upper, size)) is not None:
        for piece in pieces(walk.field, upper, lower, walk.lane):
            rows += await read(piece_query(piece, criteria), limit - len(rows))
            if len(rows) >= limit:
                return rows
        after, upper = After(*lower), lower
        read_so_far += size * walk.step
        next_size = walk.next_size(read_so_far, len(rows), limit)
        if next_size is None:
            break
        size = next_size
    return rows + await read(continued(criteria, sort, after), limit - len(rows))
