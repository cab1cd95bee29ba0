"""Finding customers on the real stack: customers registered through `members.v1` are found by
two Chinese characters of their name and by the beginning of a Latin word of it (accents and
case ignored); tags, city, spend and last-order filters narrow the list; sorted lists page by
cursor without gaps or repeats; bad parameters are a 4xx with a reason; the database holds no
plaintext of the names or cities (only keyed hashes), and an erased customer is no longer found."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import bson
import pytest
from pymongo import AsyncMongoClient
from stackutil import ServiceProcess, Stack, cloud_event, eventually, order_placed, send, unique

pytestmark = pytest.mark.e2e
NOW = datetime.now(UTC)
PEOPLE = {
    # key: (name, city, tags, [(amount, days ago)])
    "ouyang": ("欧阳晓雨", "杭州市", ["vip-care"], [("500.00", 40)]),
    "sima": ("司马晓雨", "杭州", ["vip-care", "b2b"], [("80.00", 2)]),
    "okonkwo": ("Marguerite Okonkwo", "Hangzhou", [], [("1200.00", 10), ("300.00", 12)]),
    "alvarez": ("José Álvarez", "上海", ["b2b"], [("80.00", 100)]),
    "wang": ("王芳", "上海", [], []),
}


@pytest.fixture(scope="module")
def archive(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("archive", stack).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def ids(stack: Stack, archive: ServiceProcess) -> dict[str, str]:
    """The five customers, registered and with their orders applied: key -> customer id."""
    ids = {key: unique("find") for key in PEOPLE}
    for n, (key, (name, city, tags, orders)) in enumerate(PEOPLE.items()):
        customer = ids[key]
        data = {"name": name, "city": city, "tags": tags, "phone": f"1390000000{n}"}
        send(stack, "members.v1", (customer, cloud_event("customer.registered", customer, data)))
        placed = [
            order_placed(customer, f"{customer}-o{i}", amount, time=NOW - timedelta(days=days))
            for i, (amount, days) in enumerate(orders)
        ]
        if placed:
            send(stack, "orders.v1", *[(customer, p) for p in placed])
    for key, customer in ids.items():
        name, count = PEOPLE[key][0], len(PEOPLE[key][3])

        # The orders (orders.v1) prove nothing of the registration (members.v1): wait for both.
        def applied(customer: str = customer, name: str = name, count: int = count) -> bool:
            response = archive.get(f"/customers/{customer}")
            if response.status_code != 200:
                return False
            record = response.json()
            return bool(
                record["value"]["order_count"] == count and record["profile"]["name"] == name
            )

        eventually(applied, timeout=30)
    return ids


def found(archive: ServiceProcess, **params: Any) -> list[str]:
    response = archive.get("/customers", **params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def keys_of(ids: dict[str, str], found_ids: list[str]) -> list[str]:
    by_id = {customer: key for key, customer in ids.items()}
    return [by_id[i] for i in found_ids]


def test_a_customer_is_found_by_two_chinese_characters_or_a_latin_prefix(
    archive: ServiceProcess, ids: dict[str, str]
) -> None:
    assert sorted(keys_of(ids, found(archive, q="晓雨"))) == ["ouyang", "sima"]
    assert keys_of(ids, found(archive, q="欧阳晓")) == ["ouyang"], "every bigram must be there"
    assert keys_of(ids, found(archive, q="阳晓")) == ["ouyang"], "anywhere in the name"
    assert keys_of(ids, found(archive, q="王芳")) == ["wang"]
    assert keys_of(ids, found(archive, q="okon")) == ["okonkwo"]
    assert keys_of(ids, found(archive, q="MARGUERITE ok")) == ["okonkwo"]
    assert keys_of(ids, found(archive, q="ÁLV")) == ["alvarez"], "accents and case ignored"
    assert keys_of(ids, found(archive, q="alvarez")) == ["alvarez"]
    assert found(archive, q="konkwo") == [], "the beginning of a word, not any part"
    assert keys_of(ids, found(archive, q="139 00000004")) == ["wang"], "a phone as before"
    assert archive.get("/customers", q="王").status_code == 422, "one character is too short"
    refused = archive.get("/customers", q="王 x 🙂")
    assert refused.status_code == 422
    assert "two Chinese characters" in refused.json()["message"]


def test_filters_narrow_the_list(archive: ServiceProcess, ids: dict[str, str]) -> None:
    assert sorted(keys_of(ids, found(archive, city="杭州"))) == ["ouyang", "sima"], "杭州市 = 杭州"
    assert keys_of(ids, found(archive, city=" hangZHOU ")) == ["okonkwo"]
    assert keys_of(ids, found(archive, tag=["vip-care", "b2b"])) == ["sima"]
    assert sorted(keys_of(ids, found(archive, tag="b2b", city="上海"))) == ["alvarez"]
    spent = found(archive, min_net_spent="100", max_net_spent="1500")
    assert sorted(keys_of(ids, spent)) == ["okonkwo", "ouyang"]
    month_ago = (NOW - timedelta(days=30)).isoformat()
    assert sorted(keys_of(ids, found(archive, last_order_after=month_ago))) == ["okonkwo", "sima"]
    assert sorted(keys_of(ids, found(archive, last_order_before=month_ago))) == [
        "alvarez",
        "ouyang",
    ]
    assert keys_of(ids, found(archive, q="晓雨", tag="b2b")) == ["sima"]


def all_pages(archive: ServiceProcess, limit: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):
        page = archive.get("/customers", limit=limit, cursor=cursor, **params).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages do not end")


@pytest.mark.parametrize("sort", ["-net_spent", "net_spent", "last_order_at", "-last_order_at"])
def test_a_sorted_list_pages_by_cursor_in_order_without_gaps_or_repeats(
    archive: ServiceProcess, ids: dict[str, str], sort: str
) -> None:
    field, descending = sort.removeprefix("-"), sort.startswith("-")
    whole = archive.get("/customers", sort=sort).json()["items"]

    def key(item: dict[str, Any]) -> tuple[bool, Any, str]:
        value = item[field]
        value = Decimal(value) if field == "net_spent" else value
        return value is not None, value, item["id"]

    assert [i["id"] for i in whole] == [i["id"] for i in sorted(whole, key=key, reverse=descending)]
    assert sorted(i["id"] for i in whole) == sorted(ids.values())
    assert [i["id"] for i in all_pages(archive, 2, sort=sort)] == [i["id"] for i in whole]
    if field == "net_spent":
        first = "okonkwo" if descending else "wang"
        assert keys_of(ids, [whole[0]["id"]]) == [first]
    else:
        assert keys_of(ids, [whole[0 if not descending else -1]["id"]]) == ["wang"], (
            "no last order: first ascending, last descending"
        )


def test_rfm_sorts_and_pages_too(archive: ServiceProcess, ids: dict[str, str]) -> None:
    whole = archive.get("/customers", sort="-rfm").json()["items"]
    scores = [(i["rfm"], i["id"]) for i in whole]
    assert scores == sorted(scores, reverse=True)
    assert all(isinstance(score, int) for score, _ in scores)
    assert [i["id"] for i in all_pages(archive, 2, sort="-rfm")] == [i["id"] for i in whole]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"sort": "name"}, 422),
        ({"min_net_spent": "10", "max_net_spent": "5"}, 422),
        ({"last_order_after": "not a time"}, 422),
        ({"q": "🙂🙂"}, 422),
        ({"cursor": "%%%"}, 400),
    ],
)
def test_bad_parameters_are_a_4xx_with_a_reason(
    archive: ServiceProcess, params: dict[str, str], status: int
) -> None:
    response = archive.get("/customers", **params)
    assert response.status_code == status, response.text
    assert response.json()["error"]


def test_a_cursor_of_another_sort_is_refused(archive: ServiceProcess, ids: dict[str, str]) -> None:
    cursor = archive.get("/customers", sort="-net_spent", limit=1).json()["next_cursor"]
    refused = archive.get("/customers", sort="rfm", limit=1, cursor=cursor)
    assert refused.status_code == 400
    assert "another sort" in refused.text


async def customers_of(stack: Stack, database: str) -> list[dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url)
    try:
        return await client[database]["customers"].find().to_list()
    finally:
        await client.close()


def test_the_database_holds_keyed_hashes_not_names_and_an_erased_customer_is_not_found(
    stack: Stack, archive: ServiceProcess, ids: dict[str, str]
) -> None:
    database = archive.env["CRM_ARCHIVE_DATABASE"]
    docs = {d["_id"]: d for d in asyncio.run(customers_of(stack, database))}
    assert len(docs[ids["ouyang"]]["lookup"]["name"]) == 3, "a keyed hash per bigram"
    dump = b"".join(bson.encode(d) for d in docs.values())
    needles = {"晓雨", "欧阳", "王芳", "okon", "Okonkwo", "Marguerite", "José", "alvarez", "杭州"}
    needles |= {"Hangzhou", "hangzhou", "上海"}
    assert [n for n in needles if n.encode() in dump] == []

    customer = ids["ouyang"]
    request = cloud_event("customer.erasure_requested", customer, {"reason": "PIPL 第47条"})
    send(stack, "members.v1", (customer, request))
    eventually(lambda: found(archive, q="欧阳晓") == [], timeout=30)
    erased = {d["_id"]: d for d in asyncio.run(customers_of(stack, database))}[customer]
    assert erased["lookup"] == {}, "no name, city, phone or e-mail hash stays"
    assert keys_of(ids, found(archive, q="晓雨")) == ["sima"]
