"""Finding customers: what a name and a city are searched by (Chinese bigrams, Latin word
prefixes, folded), how `q` is told apart (e-mail, phone, name), the stored lookups (keyed hashes,
no plaintext, gone after an erasure), the list's parameters (a clear 4xx for bad values) and its
keyset cursor, and filters, sort and paging on the in-memory fakes."""

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from archive_fakes import InMemoryCustomers
from fastapi import HTTPException
from pydantic import ValidationError
from test_archive_erasure import erasure
from test_archive_orders import T0, ev, placed, run

from crm_archive.adapters import finding
from crm_archive.adapters.documents import to_document
from crm_archive.adapters.pii import lookup_keys
from crm_archive.domain.facts import Profile
from crm_archive.domain.search import (
    MAX_NAME_TOKENS,
    MAX_PREFIX,
    SearchText,
    SearchTextError,
    city_token,
    name_tokens,
    parse_search,
)
from crm_archive.entrypoints.finding import CustomerQuery, list_after, list_cursor
from crm_archive.ports import After, CustomerFilter, CustomerRow, CustomerSort
from crm_contracts.members import v1 as members_v1
from crm_runtime.crypto import SHREDDED, FieldCipher, KeyRing
from crm_runtime.paging import encode_cursor

pytestmark = pytest.mark.unit
RING = KeyRing({"k": os.urandom(32)}, "k", os.urandom(32))


# -- what a name is found by ---------------------------------------------------------------------
def test_a_chinese_name_gives_every_bigram_whatever_the_spaces_or_dots_between() -> None:
    assert name_tokens("欧阳晓雨") == ["欧阳", "阳晓", "晓雨"]
    assert name_tokens("王 芳") == name_tokens("王·芳") == name_tokens("王芳") == ["王芳"]
    assert name_tokens("王") == [], "one character is no bigram"


def test_a_latin_name_gives_every_prefix_of_each_word_folded() -> None:
    assert name_tokens("Li Na") == ["li", "na"]
    assert name_tokens("José Okonkwo") == [
        "jo",
        "jos",
        "jose",
        *[w[:n] for w in ["okonkwo"] for n in range(2, 8)],
    ]
    assert name_tokens("ＪＯＳÉ") == name_tokens("josé") == name_tokens("JOSE")
    assert "obrien" in name_tokens("Seán O'Brien-Smith"), "apostrophes do not split a word"
    assert "smith" in name_tokens("Seán O'Brien-Smith"), "hyphens do"


def test_a_long_word_gives_prefixes_up_to_the_cap_only() -> None:
    word = "Wolfeschlegelsteinhausenbergerdorff"
    tokens = name_tokens(word)
    assert max(len(t) for t in tokens) == MAX_PREFIX
    assert len(tokens) == MAX_PREFIX - 1


def test_emoji_digits_and_mixed_scripts_give_only_the_letters_fragments() -> None:
    assert name_tokens("张Wei🙂") == ["we", "wei"], "张 alone is no bigram; the emoji is nothing"
    assert name_tokens("🙂🙂🙂") == []
    assert name_tokens("李雷2号 Lei") == ["李雷", "le", "lei"], "a digit breaks a run"
    assert name_tokens("김민준") == ["김민", "민준"], "Hangul syllables stay whole"
    assert name_tokens("Влад") == ["вл", "вла", "влад"]


def test_an_empty_or_blank_name_gives_nothing_and_a_very_long_one_is_capped() -> None:
    assert name_tokens(None) == name_tokens("") == name_tokens(" \t\n ") == []
    long_name = "".join(chr(0x4E00 + i) for i in range(200))
    assert len(name_tokens(long_name)) == MAX_NAME_TOKENS
    latin = " ".join(f"w{chr(97 + i % 26)}{chr(97 + i // 26)}x" for i in range(100))
    assert len(name_tokens(latin)) == MAX_NAME_TOKENS


def test_a_city_is_compared_folded_and_without_a_trailing_shi() -> None:
    assert city_token("杭州市") == city_token(" 杭州 ") == "杭州"
    assert city_token("Hang-zhou") == city_token("HANGZHOU") == "hangzhou"
    assert city_token("市") == "市", "a one-character name keeps its 市"
    assert city_token("  ") is None
    assert city_token(None) is None


# -- what q asks for -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("q", "kind"),
    [
        ("Li.Lei@Example.com", "email"),
        ("+86 138-0013-8000", "phone"),
        ("(021) 5555 1234", "phone"),
        ("138", "phone"),
        ("晓雨", "name"),
        ("wang", "name"),
        ("Wang 13800", "name"),
    ],
)
def test_q_is_an_email_with_an_at_a_phone_when_only_digits_else_a_name(q: str, kind: str) -> None:
    assert parse_search(q).kind == kind


def test_a_name_query_asks_for_each_bigram_and_each_word_prefix() -> None:
    assert parse_search("欧阳晓").name_tokens == ("欧阳", "阳晓")
    assert parse_search(" Jose  ALV ").name_tokens == ("jose", "alv")
    assert parse_search("x wang").name_tokens == ("wang",), "one letter is dropped"
    too_long = parse_search("Wolfeschlegelsteinhausen").name_tokens
    assert too_long == ("wolfeschlege",), "matched on the first 12 letters, as stored"
    assert set(parse_search("Okonk").name_tokens) <= set(name_tokens("Marguerite Okonkwo"))


@pytest.mark.parametrize("q", ["王", "x", "🙂🙂", "  ", "-", "a b c"])
def test_a_query_with_nothing_to_search_is_refused_with_a_reason(q: str) -> None:
    with pytest.raises(SearchTextError, match="two Chinese characters or two letters"):
        parse_search(q)


# -- what is stored and what is queried: keyed hashes only ---------------------------------------
def test_the_lookups_hold_keyed_hashes_of_the_name_and_city_never_the_plaintext() -> None:
    profile = Profile(name="欧阳晓雨 Maria", city="杭州市", phone="13800138000")
    lookup = lookup_keys(profile, RING)
    assert len(lookup["name"]) == len(name_tokens(profile.name)) == 3 + 4
    assert lookup["city"] == lookup_keys(Profile(city=" 杭州 "), RING)["city"]
    flat = repr(lookup)
    assert not any(part in flat for part in ("欧阳", "晓雨", "maria", "杭州", "13800138000"))
    other = KeyRing({"k": os.urandom(32)}, "k", os.urandom(32))
    assert lookup_keys(profile, other)["name"][0] != lookup["name"][0], "keyed: not a plain hash"


def test_a_name_query_is_all_of_its_fragments_hashes() -> None:
    query = finding.customer_query(CustomerFilter(search=parse_search("欧阳晓")), RING)
    assert query == {"lookup.name": {"$all": lookup_keys(Profile(name="欧阳晓"), RING)["name"]}}
    assert "欧阳" not in repr(query)
    assert finding.customer_query(CustomerFilter(city="   "), RING) == finding.NOTHING


def test_the_most_selective_criterion_comes_first_and_the_page_start_last() -> None:
    """SecantusDB reads through the index of the first indexed criterion: a name, a city or a
    tag before a grade, and the keyset condition (an `$or` over the sort key) after them all."""
    filters = CustomerFilter(grade="vip", at_risk=False, city="杭州", search=parse_search("晓雨"))
    assert list(finding.customer_query(filters, RING)) == [
        "lookup.name",
        "lookup.city",
        "grade",
        "at_risk",
    ]
    sort = CustomerSort("net_spent", descending=True)
    page = finding.page_query(filters, sort, After(Decimal("5"), "c9"), RING)
    assert page == {
        "$and": [
            finding.customer_query(filters, RING),
            finding.after_query(sort, After(Decimal("5"), "c9")),
        ]
    }, "the page's start after the criteria, not beside them"


async def test_an_erased_customer_keeps_no_lookup_and_is_not_found_by_name() -> None:
    repo = InMemoryCustomers()
    await run(repo, named("c1", "欧阳晓雨", city="杭州"))
    cipher = FieldCipher("c1", os.urandom(32))
    assert to_document(repo.customers["c1"], cipher, RING)["lookup"]["name"]
    await run(repo, erasure("c1"))
    assert to_document(repo.customers["c1"], SHREDDED, RING)["lookup"] == {}
    assert await names(repo, CustomerFilter(search=parse_search("晓雨"))) == []


# -- the list's parameters -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sort": "name"}, "Input should be"),
        ({"min_net_spent": "-1"}, "greater than or equal to 0"),
        ({"min_net_spent": "abc"}, "valid decimal"),
        ({"min_net_spent": "NaN"}, "finite"),
        ({"min_net_spent": "100", "max_net_spent": "10"}, "must not be above"),
        ({"last_order_after": "yesterday"}, "valid datetime"),
        (
            {"last_order_after": "2026-03-02T00:00:00Z", "last_order_before": "2026-03-01"},
            "must be before",
        ),
        ({"limit": "0"}, "greater than or equal to 1"),
        ({"q": "x"}, "at least 2 characters"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_bad_list_parameters_are_refused_with_a_message(
    params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        CustomerQuery.model_validate(params)


def test_a_q_with_nothing_searchable_is_a_422_with_the_reason() -> None:
    with pytest.raises(HTTPException) as refused:
        CustomerQuery(q="王 x").to_filter()
    assert refused.value.status_code == 422
    assert "two Chinese characters" in str(refused.value.detail)


def test_the_parameters_become_a_filter_and_a_sort() -> None:
    params = CustomerQuery.model_validate(
        {
            "q": "晓雨",
            "tag": ["a", "b", "a"],
            "last_order_after": "2026-03-01T00:00:00",
            "sort": "-rfm",
        }
    )
    filters = params.to_filter()
    assert filters.search == SearchText("name", "晓雨", ("晓雨",))
    assert filters.tags == ("a", "b")
    assert filters.last_order_after == datetime(2026, 3, 1, tzinfo=UTC), "no zone: UTC"
    assert params.to_sort() == CustomerSort("rfm", descending=True)
    assert CustomerQuery().to_sort() == CustomerSort()


def row(customer_id: str, **values: Any) -> CustomerRow:
    fields: dict[str, Any] = {"net_spent": Decimal(0), "last_order_at": None, **values}
    return CustomerRow(customer_id, None, None, False, None, 0, **fields)


def test_the_cursor_holds_the_last_rows_sort_value_and_id() -> None:
    sort = CustomerSort("net_spent", descending=True)
    rows = [row("a", net_spent=Decimal("9.50")), row("b", net_spent=Decimal("3.20"))]
    assert list_cursor(rows, sort, 3) is None, "a short page is the last"
    assert list_after(list_cursor(rows, sort, 2), sort) == After(Decimal("3.20"), "b")
    at = CustomerSort("last_order_at")
    dated = [row("c", last_order_at=T0)]
    assert list_after(list_cursor(dated, at, 1), at) == After(T0, "c")
    assert list_after(list_cursor([row("d")], at, 1), at) == After(None, "d")
    assert list_after(encode_cursor({"id": "x"}), CustomerSort()) == After(None, "x")


@pytest.mark.parametrize(
    "position",
    [
        {"id": "a", "sort": "net_spent", "v": "NaN"},
        {"id": "a", "sort": "net_spent", "v": "many"},
        {"id": "a", "sort": "net_spent", "v": 12},
        {"id": 5, "sort": "net_spent", "v": "1"},
        {"id": "a", "sort": "-net_spent", "v": "1"},
        {"id": "a", "v": "1"},
    ],
)
def test_a_bad_cursor_or_one_of_another_sort_is_a_400(position: dict[str, Any]) -> None:
    with pytest.raises(HTTPException) as refused:
        list_after(encode_cursor(position), CustomerSort("net_spent"))
    assert refused.value.status_code == 400


# -- filters, sort and paging on the fakes -------------------------------------------------------
def named(customer: str, name: str, city: str | None = None, tags: list[str] | None = None) -> Any:
    return ev(
        members_v1.CUSTOMER_REGISTERED,
        customer,
        T0,
        members_v1.CustomerRegistered(name=name, city=city, tags=tags or []),
    )


async def names(repo: InMemoryCustomers, filters: CustomerFilter, **sort: Any) -> list[str]:
    rows = await repo.find(filters, CustomerSort(**sort), None, 100)
    return [r.id for r in rows]


async def test_name_fragments_city_tags_and_spend_narrow_the_list() -> None:
    repo = InMemoryCustomers()
    await run(
        repo,
        named("c1", "欧阳晓雨", city="杭州市", tags=["vip-care"]),
        named("c2", "Marguerite Okonkwo", city="Hangzhou"),
        named("c3", "司马晓雨", city="杭州", tags=["vip-care", "b2b"]),
        placed("c1", "o1", "500", T0 - timedelta(days=40)),
        placed("c3", "o2", "80", T0 - timedelta(days=2)),
    )
    assert await names(repo, CustomerFilter(search=parse_search("晓雨"))) == ["c1", "c3"]
    assert await names(repo, CustomerFilter(search=parse_search("阳晓雨"))) == ["c1"]
    assert await names(repo, CustomerFilter(search=parse_search("okon"))) == ["c2"]
    assert await names(repo, CustomerFilter(search=parse_search("MARGUERITE ok"))) == ["c2"]
    assert await names(repo, CustomerFilter(search=parse_search("konk"))) == [], "prefixes only"
    assert await names(repo, CustomerFilter(city="杭州")) == ["c1", "c3"]
    assert await names(repo, CustomerFilter(tags=("vip-care", "b2b"))) == ["c3"]
    assert await names(repo, CustomerFilter(min_net_spent=Decimal("80"))) == ["c1", "c3"]
    assert await names(repo, CustomerFilter(max_net_spent=Decimal("79.99"))) == ["c2"]
    recent = CustomerFilter(last_order_after=T0 - timedelta(days=30))
    assert await names(repo, recent) == ["c3"]
    assert await names(repo, CustomerFilter(last_order_before=T0 - timedelta(days=30))) == ["c1"]


async def test_a_sorted_list_pages_by_sort_value_then_id_without_gaps_or_repeats() -> None:
    repo = InMemoryCustomers()
    amounts = ["30", "10", "30", "20", None, "30", None]
    events = [named(f"c{i}", "李雷") for i in range(len(amounts))]
    events += [placed(f"c{i}", f"o{i}", a, T0) for i, a in enumerate(amounts) if a is not None]
    await run(repo, *events)
    for sort, expected in [
        (CustomerSort("net_spent", True), ["c5", "c2", "c0", "c3", "c1", "c6", "c4"]),
        (CustomerSort("last_order_at"), ["c4", "c6", "c0", "c1", "c2", "c3", "c5"]),
        (CustomerSort("last_order_at", True), ["c5", "c3", "c2", "c1", "c0", "c6", "c4"]),
    ]:
        seen: list[str] = []
        after = None
        while page := await repo.find(CustomerFilter(), sort, after, 2):
            seen += [r.id for r in page]
            after = After(page[-1].sort_value(sort.field), page[-1].id)
        assert seen == expected, sort


async def test_rfm_is_kept_with_the_record_for_sorting() -> None:
    repo = InMemoryCustomers()
    await run(
        repo,
        *[placed("busy", f"o{i}", "300", T0 - timedelta(days=i)) for i in range(8)],
        placed("once", "o9", "10", T0 - timedelta(days=200)),
    )
    assert (repo.customers["busy"].rfm_total, repo.customers["once"].rfm_total) == (13, 5)
    assert await names(repo, CustomerFilter(), field="rfm", descending=True) == ["busy", "once"]
    assert to_document(repo.customers["busy"], SHREDDED, RING)["rfm"] == 13
