"""Finding customers (`GET /customers`) among 100,000 on the real local stack: p50/p95/p99.

    python benchmarks/archive_search.py [--customers 100000] [--requests 200]

Starts a private Apache Kafka + SecantusDB on free ports (or uses KAFKA_BOOTSTRAP_SERVERS /
MONGODB_URL), loads the customers straight into a fresh archive database through the archive's
own repository (records made by the domain from a registration and its orders, sealed, with
their keyed lookups; not through Kafka, for speed), starts the archive on that database and times
typical searches over HTTP, one request at a time: a two-character fragment of a Chinese name, the
beginning of a Latin name, a phone number, filters with a sort, and the second page of that.
Prints a table.
"""

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from benchutil import print_table, private_stack
from stack import DEV_TOKEN, dev_keys_file

from crm_archive.app import customer_repository
from crm_archive.domain.customer import Customer
from crm_archive.domain.facts import Profile
from crm_archive.domain.rules import DEFAULT_RULES
from crm_archive.ports import Changes
from crm_archive.settings import ArchiveSettings
from crm_runtime.crypto import CustomerKeys
from crm_runtime.mongo import Inbox, create_client
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武"
)
COMPOUND = ("欧阳", "司马", "上官", "诸葛", "东方", "慕容")
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华玉萍红娥玲芬燕鹏辉俊峰建国宇浩然子轩梓涵一诺"
    "欣怡雨晨思远佳琪嘉志晓东海春梅文博天佑晴婷雪莉立新永福安宁泽宏凯瑞琳倩颖慧珊月琴蕾薇丹阳光荣"
)
FIRST = [
    "James",
    "Maria",
    "John",
    "Anna",
    "Robert",
    "Sofia",
    "Michael",
    "Emma",
    "William",
    "Olivia",
    "David",
    "Lucas",
    "Mia",
    "Daniel",
    "Chloé",
    "Léa",
    "Zoë",
    "José",
    "Jürgen",
    "Søren",
    "Ingrid",
    "Marguerite",
    "Élodie",
    "Mateo",
    "Isabella",
    "Noah",
    "Amelia",
    "Hugo",
    "Camille",
    "Luca",
    "Giulia",
    "Sven",
    "Astrid",
    "Aleksandr",
    "Natalia",
    "Omar",
    "Fatima",
    "Priya",
    "Arjun",
    "Kenji",
    "Yuki",
    "Min-jun",
    "Seo-yeon",
]
LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Dubois",
    "Moreau",
    "Lefèvre",
    "Rossi",
    "Russo",
    "Bianchi",
    "Ferrari",
    "Okonkwo",
    "Nakamura",
    "Tanaka",
    "Sato",
    "Kim",
    "Park",
    "Lee",
    "Nguyen",
    "Tran",
    "Ivanov",
    "Petrov",
    "Kowalski",
    "Nowak",
    "Andersson",
    "Johansson",
    "Hansen",
    "Jensen",
    "O'Brien",
    "Murphy",
    "Kelly",
    "Walsh",
    "Fernández",
    "López",
    "González",
    "Pérez",
    "Sánchez",
    "Silva",
    "Santos",
    "Oliveira",
    "Costa",
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Wu",
    "Zhou",
]
CITIES = [
    "上海",
    "北京",
    "广州",
    "深圳",
    "杭州",
    "成都",
    "重庆",
    "武汉",
    "西安",
    "南京",
    "苏州",
    "天津",
    "长沙",
    "郑州",
    "青岛",
    "宁波",
    "厦门",
    "合肥",
    "昆明",
    "大连",
    "无锡",
    "佛山",
    "东莞",
    "济南",
    "福州",
    "温州",
    "沈阳",
    "哈尔滨",
    "南宁",
    "贵阳",
]
LATIN_CITIES = ("Singapore", "London", "Paris", "Hong Kong", "Sydney", "Toronto")
TAGS = [
    "vip-care",
    "b2b",
    "wechat",
    "newsletter",
    "wholesale",
    "student",
    "festival-2026",
    "returning",
    "app",
    "store-visit",
]


def zipf(rng: random.Random, items: Sequence[str], s: float = 0.9) -> str:
    weights = [1 / (rank + 1) ** s for rank in range(len(items))]
    return rng.choices(items, weights)[0]


@dataclass
class Made:
    customer: Customer
    phone: str


def make_customer(n: int, rng: random.Random, now: datetime) -> Made:
    """One customer: a Chinese (70%) or Latin name, a phone, a city, tags, 0-12 orders."""
    customer_id = f"c{n:07d}"
    registered = now - timedelta(days=rng.randrange(30, 900))
    if rng.random() < 0.7:
        surname = rng.choice(COMPOUND) if rng.random() < 0.02 else zipf(rng, SURNAMES)
        name = surname + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2, 2))))
        city = zipf(rng, CITIES) + ("市" if rng.random() < 0.2 else "")
    else:
        name = f"{rng.choice(FIRST)} {zipf(rng, LAST, 0.5)}"
        city = rng.choice(LATIN_CITIES) if rng.random() < 0.5 else zipf(rng, CITIES)
    phone = f"1{rng.choice('3456789')}{n:09d}"
    customer = Customer.first_sighting(customer_id, registered, "customer.registered")
    customer.register(
        registered,
        Profile(name=name, phone=phone, email=f"{customer_id}@example.com", city=city),
        rng.sample(TAGS, rng.choice((0, 0, 1, 1, 2, 3))),
        {},
        f"agent-{rng.randrange(1, 21):02d}",
    )
    for i in range(0 if rng.random() < 0.25 else rng.randrange(1, 13)):
        at = registered + timedelta(seconds=rng.randrange(int((now - registered).total_seconds())))
        amount = Decimal(int(rng.lognormvariate(5.5, 1.0) * 100)) / 100
        customer.place_order(f"{customer_id}-o{i}", at, amount, "CNY")
    customer.evaluate(now, DEFAULT_RULES)
    return Made(customer, phone)


async def load(
    settings: ArchiveSettings, database: str, total: int, batch: int, *, save: bool = True
) -> list[Made]:
    """The customers, saved `batch` at a time through the archive's repository (or only made
    again, the same names, phones and cities, for a database loaded by an earlier run)."""
    client = create_client(settings.mongodb_url, app_name="bench-archive-search")
    db = client[database]
    keys = CustomerKeys(db, settings.key_ring())
    repository = customer_repository(db, UnitOfWork(client, Inbox(db), Outbox(db)), keys)
    await keys.ensure_indexes()
    await repository.ensure_indexes()
    rng, now = random.Random(17), datetime.now(UTC)
    made: list[Made] = []
    begin = time.monotonic()
    for start in range(0, total, batch):
        chunk = [make_customer(n, rng, now) for n in range(start, min(start + batch, total))]
        if save:
            await repository.save(Changes(customers=[m.customer for m in chunk]))
        made += chunk
        if (start // batch) % 20 == 0:
            print(
                f"  {'loaded' if save else 'made'} {len(made):,} customers"
                f" ({time.monotonic() - begin:.0f} s)",
                flush=True,
            )
    await client.close()
    return made


def timed(client: httpx.Client, requests: list[dict[str, str]]) -> tuple[list[float], int]:
    """Seconds per request (one at a time) and the mean number of rows answered."""
    times, rows = [], 0
    for params in requests:
        begin = time.perf_counter()
        response = client.get("/customers", params=params)
        times.append(time.perf_counter() - begin)
        response.raise_for_status()
        rows += len(response.json()["items"])
    return times, rows // max(1, len(requests))


def row(name: str, times: list[float], mean_rows: int) -> tuple[str, int, int, str, str, str, str]:
    """The figures of one kind of search, with the machine's load average (1 min) right after."""
    q = statistics.quantiles(sorted(times), n=100)
    ms = [f"{q[i] * 1000:.1f}" for i in (49, 94, 98)]
    return (name, len(times), mean_rows, *ms, f"{os.getloadavg()[0]:.1f}")  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--database",
        help="an archive database an earlier run loaded (with MONGODB_URL): not loaded again",
    )
    parser.add_argument(
        "--census-wait",
        type=float,
        default=30.0,
        help="seconds to let the archive take its census before timing (0: time without it)",
    )
    args = parser.parse_args()
    with private_stack() as bench:
        run = f"search{int(time.time())}"
        database = args.database or f"crm_archive_{run}"
        os.environ.setdefault("CRM_MASTER_KEYS_FILE", str(dev_keys_file()))
        settings = ArchiveSettings(
            mongodb_url=bench.mongodb_url, kafka_bootstrap_servers=bench.bootstrap
        )
        began = time.monotonic()
        save = args.database is None
        made = asyncio.run(load(settings, database, args.customers, args.batch, save=save))
        print(f"database {database} at {bench.mongodb_url}", flush=True)
        loaded_s = time.monotonic() - began
        port, _ = bench.start_service(
            "archive",
            {
                "CRM_ARCHIVE_DATABASE": database,
                "CRM_ARCHIVE_CONSUMER_GROUP": run,
                "CRM_ARCHIVE_SWEEPS_ENABLED": "false",
            },
        )
        rng = random.Random(5)
        picks = rng.sample(made, args.requests)
        chinese = rng.sample([m for m in made if is_chinese(m)], args.requests)
        latin = rng.sample([m for m in made if not is_chinese(m)], args.requests)
        headers = {"Authorization": f"Bearer {DEV_TOKEN}"}
        searches: dict[str, Callable[[Made], dict[str, str]]] = {
            "phone": lambda m: {"q": m.phone},
            "city + grade, sort -net_spent": lambda m: {
                "city": m.customer.profile.city or "上海",
                "grade": rng.choice(("vip", "ordinary")),
                "sort": "-net_spent",
            },
            "tag + spend range, sort -last_order_at": lambda m: {
                "tag": rng.choice(TAGS),
                "min_net_spent": "500",
                "max_net_spent": "5000",
                "sort": "-last_order_at",
            },
            "stage, sort -rfm": lambda m: {
                "stage": rng.choice(("active", "loyal", "at_risk")),
                "sort": "-rfm",
            },
        }
        table = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as c:
            timed(c, [searches["phone"](m) for m in picks[:20]])  # warm up
            # The first sorted list starts the archive's census of the customers (which sizes
            # a broad sorted list's chunks, `adapters/census.py`) in the background; until it
            # is taken, lists read through their criteria's index.
            timed(c, [searches["stage, sort -rfm"](picks[0])])
            print(f"waiting {args.census_wait:.0f} s for the archive's census", flush=True)
            time.sleep(args.census_wait)
            fragments = [chinese_fragment(m) for m in chinese]
            table.append(row("Chinese fragment (2 chars)", *timed(c, fragments)))
            prefixes = [latin_prefix(m) for m in latin]
            table.append(row("Latin prefix (3-5 letters)", *timed(c, prefixes)))
            for name, make in searches.items():
                table.append(row(name, *timed(c, [make(m) for m in picks])))
            second = []
            for m in picks:
                first = c.get("/customers", params=searches["city + grade, sort -net_spent"](m))
                cursor = first.json()["next_cursor"] or ""
                params = {**dict(first.request.url.params), "cursor": cursor}
                second.append({k: v for k, v in params.items() if v})
            table.append(row("second page of city + grade", *timed(c, second)))
        if save:
            print(f"\nloaded {len(made):,} customers in {loaded_s:.0f} s")
        print_table(
            f"Archive search, {len(made):,} customers",
            ("search", "requests", "rows", "p50 ms", "p95 ms", "p99 ms", "load 1m"),
            table,
        )


def is_chinese(m: Made) -> bool:
    return "\u4e00" <= (m.customer.profile.name or "a")[0] <= "\u9fff"


def chinese_fragment(m: Made) -> dict[str, str]:
    """Two neighbouring characters of a Chinese name (surname and first given character, or
    the given name), as an agent would type them."""
    name = m.customer.profile.name or ""
    start = random.Random(name).randrange(max(1, len(name) - 1))
    return {"q": name[start : start + 2]}


def latin_prefix(m: Made) -> dict[str, str]:
    """The first 3-5 letters of a word of a Latin name."""
    name = m.customer.profile.name or ""
    word = random.Random(name).choice(name.split())
    return {"q": word[: random.Random(word).randrange(3, 6)]}


if __name__ == "__main__":
    main()
