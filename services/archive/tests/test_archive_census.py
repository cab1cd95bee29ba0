"""A broad descending sorted list read in chunks of its order (`adapters/census.py`): the way is
picked by the census's estimate, and the chunks give exactly the rows, in exactly the order,
that one query over every match gives, from any page start, with ties, customers without the
value, and a census that is stale or wrong. The queries are run here by a small matcher over
plain documents (MongoDB's semantics for the few shapes the walk and the keyset use)."""

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from bson.decimal128 import Decimal128

from crm_archive.adapters import census
from crm_archive.adapters.census import Census, CensusTaker, Walk
from crm_archive.adapters.finding import after_query, continued
from crm_archive.ports import After, CustomerSort

pytestmark = pytest.mark.unit
Doc = dict[str, Any]


# -- a matcher for the shapes the walk and the keyset use --------------------------------------
def value_of(doc: Doc, name: str) -> Any:
    return plain(doc.get(name))


DECIMALS: dict[bytes, Decimal] = {}


def plain(value: Any) -> Any:
    if isinstance(value, Decimal128):
        return DECIMALS.setdefault(value.bid, value.to_decimal())
    return value


def holds(doc: Doc, query: Doc) -> bool:
    for name, wanted in query.items():
        if name == "$and":
            ok = all(holds(doc, part) for part in wanted)
        elif name == "$or":
            ok = any(holds(doc, part) for part in wanted)
        elif isinstance(wanted, dict):
            ok = all(compares(value_of(doc, name), op, plain(b)) for op, b in wanted.items())
        elif isinstance(doc.get(name), list):
            ok = wanted in doc[name]
        else:
            ok = value_of(doc, name) == plain(wanted)
        if not ok:
            return False
    return True


def compares(value: Any, op: str, bound: Any) -> bool:
    if op == "$ne":
        return bool(value != bound)
    if op == "$in":
        return value in bound
    if value is None or bound is None:
        return False
    return {  # type: ignore[no-any-return]
        "$lt": value < bound,
        "$lte": value <= bound,
        "$gt": value > bound,
        "$gte": value >= bound,
    }[op]


def ordered(docs: list[Doc], sort: CustomerSort) -> list[Doc]:
    name = sort.field or "_id"

    def key(doc: Doc) -> tuple[bool, Any, str]:
        value = value_of(doc, name)
        return value is not None, value, doc["_id"]

    return sorted(docs, key=key, reverse=sort.descending)


def reader(docs: list[Doc], sort: CustomerSort, reads: list[Doc]) -> Callable[..., Any]:
    """A query's ids in `sort` order, at most `limit` of them; each query kept in `reads`."""
    in_order = [{k: plain(v) for k, v in d.items()} for d in ordered(docs, sort)]

    async def read(query: Doc, limit: int) -> list[str]:
        reads.append(query)
        return [d["_id"] for d in in_order if holds(d, query)][:limit]

    return read


def customers(n: int, seed: int) -> list[Doc]:
    """Customers with many ties (rfm 3-15), a spend with repeats, a fifth with no orders (no
    spend order time, no rfm) and a stage and tags to filter by."""
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        ordered_once = rng.random() > 0.2
        out.append(
            {
                "_id": f"c{rng.randrange(10**6):06d}-{i}",
                "stage": rng.choice(["loyal", "loyal", "active", "at_risk"]),
                "tags": rng.sample(["a", "b", "c"], rng.randrange(3)),
                "lookup": {"city": rng.choice(["h1", "h2", "h3", "h4"])},
                "net_spent": Decimal128(Decimal(rng.randrange(0, 40) * 25) / 2),
                "last_order_at": t0 + timedelta(hours=rng.randrange(500)) if ordered_once else None,
                "rfm": rng.choice([3, 9, 10, 12, 13, 15]) if ordered_once else None,
            }
        )
    return out


def take(docs: list[Doc], every: int = 1) -> Census:
    taker = CensusTaker(len(docs), random.Random(1))
    for doc in docs[::every]:
        taker.add(doc)
    return taker.census()


async def whole_list(
    docs: list[Doc], walk: Walk, criteria: Doc, sort: CustomerSort, limit: int
) -> tuple[list[str], list[Doc]]:
    """Every page of the list, read by the walk, cursor after cursor."""
    seen: list[str] = []
    reads: list[Doc] = []
    after: After | None = None
    by_id = {d["_id"]: d for d in docs}
    while page := await census.walked(
        walk, criteria, sort, after, limit, reader(docs, sort, reads)
    ):
        seen += page
        last = by_id[page[-1]]
        after = After(value_of(last, sort.field or "_id"), last["_id"])
        if len(page) < limit:
            break
    return seen, reads


# -- the same rows in the same order ------------------------------------------------------------
@pytest.mark.parametrize("name", ["rfm", "net_spent", "last_order_at"])
@pytest.mark.parametrize("criteria", [{}, {"stage": "loyal"}, {"tags": "b", "stage": "active"}])
@pytest.mark.parametrize("first", [1, 3])
async def test_the_walk_pages_exactly_as_one_query_over_every_match(
    name: str, criteria: Doc, first: int
) -> None:
    docs = customers(600, seed=7)
    sort = CustomerSort(name, descending=True)  # type: ignore[arg-type]
    figures = take(docs, every=3)  # a census of a third: positions are estimates
    walk = Walk(name, figures.marks[name], figures.step[name], first, budget=10**9)
    expected = [d["_id"] for d in ordered([d for d in docs if holds(d, criteria)], sort)]
    for limit in (7, 40):
        seen, reads = await whole_list(docs, walk, criteria, sort, limit)
        assert seen == expected, (name, criteria, limit)
    pieces = [r["$and"][0] if criteria and "$and" in r else r for r in reads]
    assert any(name in p and "_id" in p for p in pieces), "a value's ties are split by id"


async def test_a_stale_census_still_gives_every_row_once_even_new_customers_above_the_marks() -> (
    None
):
    docs = customers(400, seed=3)
    stale = take(docs)
    newer = customers(200, seed=4)
    for doc in newer:
        doc["rfm"] = 99 if doc["rfm"] is not None else None  # above every mark
        doc["net_spent"] = Decimal128("100000")
    everyone = docs + newer
    for name in ("rfm", "net_spent"):
        sort = CustomerSort(name, descending=True)
        walk = Walk(name, stale.marks[name], stale.step[name], 2, budget=10**9)
        seen, _ = await whole_list(everyone, walk, {"stage": "loyal"}, sort, 20)
        loyal = [d for d in everyone if d["stage"] == "loyal"]
        assert seen == [d["_id"] for d in ordered(loyal, sort)]


async def test_past_its_budget_the_walk_reads_the_rest_through_the_criteria_after_its_chunk() -> (
    None
):
    docs = customers(300, seed=11)
    sort = CustomerSort("rfm", descending=True)
    figures = take(docs)
    walk = Walk("rfm", figures.marks["rfm"], figures.step["rfm"], 1, budget=1)
    assert figures.step["rfm"] == 1, "a census of every customer: one chunk of one mark"
    reads: list[Doc] = []
    criteria = {"stage": "at_risk"}
    page = await census.walked(walk, criteria, sort, None, 40, reader(docs, sort, reads))
    expected = [d["_id"] for d in ordered([d for d in docs if holds(d, criteria)], sort)][:40]
    assert page == expected
    first_chunk_end = figures.marks["rfm"][-1]
    assert reads[-1] == continued(criteria, sort, After(*first_chunk_end))
    assert reads[-1]["$and"][1] == after_query(sort, After(*first_chunk_end))


def test_the_next_chunk_is_sized_by_the_matches_found_and_none_when_the_rest_costs_too_much() -> (
    None
):
    walk = Walk("rfm", [], step=10, first=1, budget=1000)
    assert walk.next_size(read=100, found=24, limit=50) == 16, "26 more at 25 per 100 read"
    assert walk.next_size(read=100, found=0, limit=50) is None, "~5,000 more to read: too many"


def test_a_piece_is_one_values_stretch_of_ids_or_a_range_of_values_between_two_positions() -> None:
    assert census.pieces("rfm", (12, "c9"), (12, "c2")) == [
        {"rfm": 12, "_id": {"$lt": "c9", "$gte": "c2"}}
    ]
    assert census.pieces("rfm", (13, "c9"), (10, "c2")) == [
        {"rfm": 13, "_id": {"$lt": "c9"}},
        {"rfm": {"$lt": 13, "$gt": 10}},
        {"rfm": 10, "_id": {"$gte": "c2"}},
    ]
    assert census.pieces("net_spent", None, (Decimal("5"), "c2")) == [
        {"net_spent": {"$gt": Decimal128("5")}},
        {"net_spent": Decimal128("5"), "_id": {"$gte": "c2"}},
    ]


def test_the_criteria_are_nested_so_the_store_reads_through_the_piece() -> None:
    piece = {"rfm": 12, "_id": {"$gte": "c2"}}
    assert census.piece_query(piece, {"stage": "loyal"}) == {
        "$and": [piece, {"$and": [{"stage": "loyal"}]}]
    }
    assert census.piece_query(piece, {}) == piece


# -- the way ---------------------------------------------------------------------------------
def spread() -> Census:
    docs = customers(2000, seed=5)
    return take(docs)


def test_the_census_counts_each_criterions_values_and_keeps_positions_in_order() -> None:
    docs = customers(500, seed=2)
    figures = take(docs)
    assert figures.total == 500
    assert figures.counts[("stage", "loyal")] == sum(d["stage"] == "loyal" for d in docs)
    assert figures.counts[("tags", "a")] == sum("a" in d["tags"] for d in docs)
    assert figures.counts[("lookup.city", "h2")] == sum(d["lookup"]["city"] == "h2" for d in docs)
    rfm = figures.marks["rfm"]
    assert rfm == sorted(rfm)
    assert all(value is not None for value, _ in rfm)
    assert all(isinstance(value, Decimal) for value, _ in figures.marks["net_spent"])


def test_a_census_of_many_keeps_a_bounded_sample_and_says_how_far_apart_its_marks_are() -> None:
    taker = CensusTaker(200_000, random.Random(3))
    for i in range(200_000):
        taker.add({"_id": f"c{i}", "rfm": i % 13, "stage": "loyal"})
    figures = taker.census()
    assert len(figures.marks["rfm"]) <= census.MARKS
    assert census.SAMPLE * 0.9 < taker.kept < census.SAMPLE * 1.1
    assert 150 < figures.step["rfm"] < 250, "200,000 customers over about 1,000 marks"


def test_a_broad_descending_list_is_walked_and_its_first_chunk_sized_for_a_page() -> None:
    figures = spread()
    walk = census.plan({"tags": "a"}, CustomerSort("rfm", True), None, 50, figures)
    assert walk is not None
    assert (walk.field, walk.lane) == ("rfm", None)
    share = figures.counts[("tags", "a")] / figures.total
    assert walk.first * walk.step >= 50 / share, "the first chunk is expected to fill the page"
    assert walk.budget == figures.counts[("tags", "a")], "no more than the tag's index reads"


@pytest.mark.parametrize(
    ("criteria", "sort", "after", "why"),
    [
        ({"stage": "loyal"}, CustomerSort("rfm"), None, "ascending"),
        ({"stage": "loyal"}, CustomerSort(), None, "by id"),
        ({"lookup.name": {"$all": ["x"]}}, CustomerSort("rfm", True), None, "a name: narrow"),
        ({"lookup.city": "unseen"}, CustomerSort("rfm", True), None, "fewer than a page"),
        ({"stage": "loyal"}, CustomerSort("rfm", True), After(None, "c1"), "past the values"),
    ],
)
def test_a_narrow_or_ascending_list_reads_through_the_criteria(
    criteria: Doc, sort: CustomerSort, after: After | None, why: str
) -> None:
    assert census.plan(criteria, sort, after, 50, spread()) is None, why


def test_without_a_census_every_list_reads_through_the_criteria() -> None:
    assert census.plan({"stage": "loyal"}, CustomerSort("rfm", True), None, 50, None) is None


def test_criteria_that_match_few_read_through_their_index_when_the_walk_would_read_more() -> None:
    figures = spread()
    narrow = {"lookup.city": "h1", "tags": "a", "stage": "at_risk"}
    share, through = census.estimate(narrow, figures) or (0, 0)
    assert through == figures.counts[("lookup.city", "h1")]
    assert census.plan(narrow, CustomerSort("rfm", True), None, 50, figures) is None, (
        f"{share * figures.total:.0f} matches: reading {through} through the city is cheaper"
    )


def test_the_estimate_multiplies_every_tags_share_and_a_ranges_share_of_the_values() -> None:
    figures = spread()
    total = figures.total
    both = {"tags": {"$all": ["a", "b"]}}
    share, through = census.estimate(both, figures) or (0, 0)
    a, b = (figures.counts[("tags", t)] / total for t in "ab")
    assert share == pytest.approx(a * b)
    assert through == figures.counts[("tags", "a")]
    ranged = {"net_spent": {"$gte": Decimal128("100"), "$lte": Decimal128("200")}}
    share, _ = census.estimate(ranged, figures) or (0, 0)
    docs = customers(2000, seed=5)
    actual = sum(Decimal(100) <= d["net_spent"].to_decimal() <= 200 for d in docs) / total
    assert share == pytest.approx(actual, abs=0.05)


# -- lanes: one stage or grade in its own order ------------------------------------------------
def test_a_list_of_one_stage_walks_that_stages_own_order_and_its_pieces_name_it() -> None:
    figures = spread()
    walk = census.plan(
        {"tags": "a", "stage": "at_risk"}, CustomerSort("rfm", True), None, 50, figures
    )
    assert walk is not None
    assert walk.lane == {"stage": "at_risk"}
    assert walk.marks == figures.lanes[("stage", "at_risk", "rfm")]
    lane_share = figures.counts[("tags", "a")] / figures.total
    assert walk.first * walk.step >= 50 / lane_share, "sized by the rest of the criteria only"
    assert census.pieces("rfm", (13, "c9"), (13, "c2"), {"stage": "at_risk"}) == [
        {"stage": "at_risk", "rfm": 13, "_id": {"$lt": "c9", "$gte": "c2"}}
    ]


def test_a_lanes_marks_are_positions_of_its_customers_only() -> None:
    docs = customers(800, seed=9)
    figures = take(docs)
    at_risk = {d["_id"] for d in docs if d["stage"] == "at_risk"}
    lane = figures.lanes[("stage", "at_risk", "net_spent")]
    assert lane
    assert all(customer in at_risk for _, customer in lane)
    assert lane == sorted(lane)


@pytest.mark.parametrize("name", ["rfm", "last_order_at"])
async def test_a_walk_in_a_lane_pages_exactly_as_one_query_over_every_match(name: str) -> None:
    docs = customers(240, seed=13)
    sort = CustomerSort(name, descending=True)  # type: ignore[arg-type]
    figures = take(docs)
    criteria = {"tags": "b", "stage": "active"}
    key = ("stage", "active", name)
    walk = Walk(name, figures.lanes[key], figures.lane_step[key], 1, 10**9, {"stage": "active"})
    expected = [d["_id"] for d in ordered([d for d in docs if holds(d, criteria)], sort)]
    seen, reads = await whole_list(docs, walk, criteria, sort, 5)
    assert seen == expected
    assert all(r["$and"][0]["stage"] == "active" for r in reads if "$and" in r and len(r) == 1)
