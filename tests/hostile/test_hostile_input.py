"""Hostile input on the real stack, all four services: every malformed event lands in the
dead-letter topic of every service that consumes its topic, with a reason (an event with a valid
envelope and bad data, in that of every service that applies its type: the others skip the type
on its envelope, ADR 0017); the partition keeps
flowing (a good event sent after it on the same key is applied); no service crashes. Unusual but
valid input (mixed scripts, a 999 kB event) is applied, not refused.

Hand-written cases cover invalid JSON and UTF-8, absurd nesting, wrong types, missing fields,
unknown types, oversized events, negative and absurd amounts, far-future dates, impossible
birthdays, a key that is not the subject, a tombstone; hypothesis mutates valid events at random
(the contracts' decoder is the oracle for which mutants must be refused).
"""

import asyncio
import importlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stackutil import ServiceProcess, Stack, cloud_event, collect, eventually, produce

from crm_contracts import EventDecodeError, decode_envelope, decode_event
from crm_contracts.envelope import check_not_in_the_future

pytestmark = [pytest.mark.hostile, pytest.mark.slow]
CONSUMERS = {
    "orders.v1": ("archive", "loyalty", "relations"),
    "members.v1": ("archive", "tickets", "loyalty", "notify", "relations"),
    "callcenter.v1": ("archive", "tickets"),
    "relations.v1": ("archive", "tickets", "notify"),
}

APPLIED = {
    name: frozenset(importlib.import_module(f"crm_{name}.handlers").CONSUMED_TYPES)
    for name in ("archive", "tickets", "loyalty", "notify", "relations")
}
"""The event types each service applies (the others of its topics it skips)."""


def refuses(service: str, value: bytes | None) -> bool:
    """Whether `service`, consuming the topic, must dead-letter `value`: a bad envelope always;
    a valid envelope with bad data only when the service applies that type."""
    if value is None:
        return True
    try:
        envelope = decode_envelope(value)
    except EventDecodeError:
        return True
    return envelope.type in APPLIED[service]


@pytest.fixture(scope="module")
def suite(stack: Stack) -> Iterator[dict[str, ServiceProcess]]:
    services = {
        name: ServiceProcess.isolated(name, stack, sweeps_enabled="false")
        for name in ("archive", "tickets", "loyalty", "notify", "relations")
    }
    for service in services.values():
        service.start()
    yield services
    for service in services.values():
        service.stop()


def key() -> str:
    return f"h-{uuid.uuid4().hex[:12]}"


DELETE = object()


def order(customer: str, **changes: Any) -> dict[str, Any]:
    """A valid `order.placed`, with `changes` by path (`data__amount`; DELETE removes)."""
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "hostile",
        "type": "order.placed",
        "subject": customer,
        "time": datetime.now(UTC).isoformat(),
        "data": {"order_id": f"o-{uuid.uuid4().hex[:8]}", "amount": "10.00", "currency": "CNY"},
    }
    for path, value in changes.items():
        order_with(event, path, value)
    return event


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


def registered(customer: str, **data: Any) -> bytes:
    return cloud_event("customer.registered", customer, {"name": "Li Lei", **data})


def complaint(customer: str, **data: Any) -> bytes:
    body = {"complaint_id": f"k-{uuid.uuid4().hex[:8]}", "channel": "phone", "description": "坏了"}
    return cloud_event("complaint.reported", customer, {**body, **data})


def task_completed(customer: str, **data: Any) -> bytes:
    now = datetime.now(UTC).isoformat()
    body = {
        "task_id": f"t-{uuid.uuid4().hex[:8]}",
        "kind": "follow_up",
        "by": "owner-01",
        "outcome": "reached",
        "completed_at": now,
        "due_at": now,
        "on_time": True,
    }
    return cloud_event("task.completed", customer, {**body, **data})


def agreement_created(customer: str, **terms: Any) -> bytes:
    body = {
        "agreement_id": f"a-{uuid.uuid4().hex[:8]}",
        "number": "XY-1",
        "owner": "owner-01",
        "starts_on": "2026-01-01",
        "ends_on": "2026-12-31",
        "terms": {
            "period": "quarter",
            "measure": "spend",
            "minimum": "100000",
            "currency": "CNY",
            "renewal_notice_days": 30,
            **terms,
        },
    }
    return cloud_event("agreement.created", customer, body)


def digest_due(owner: str, tasks: int) -> bytes:
    """An owner's morning digest listing `tasks` tasks (the contract allows 50)."""
    now = datetime.now(UTC).isoformat()
    line = {"customer_id": "C-1", "kind": "callback", "due_at": now, "overdue": False}
    body = {
        "owner": owner,
        "day": now[:10],
        "due_today": tasks,
        "overdue": 0,
        "tasks": [{**line, "task_id": f"t-{n}", "business_days_overdue": 0} for n in range(tasks)],
    }
    return cloud_event("tasks.digest_due", owner, body)


def hand_written() -> list[tuple[str, str, str, bytes | None, str]]:
    """(case, topic, key, value, a word the DLQ reason must contain)."""
    far = (datetime.now(UTC) + timedelta(days=3650)).isoformat()
    k = key
    cases: list[tuple[str, str, str, bytes | None, str]] = []
    for case, value, word in [
        ("not JSON", b'{"oops', "not JSON"),
        ("invalid UTF-8", b"\xff\xfe\x00{}", "not JSON"),
        ("absurd nesting", b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        ("a JSON array", b"[1, 2, 3]", "JSON object"),
        ("no type", raw(order("x", type=DELETE)), "type"),
        ("unknown type", raw(order("x", type="order.teleported")), "unknown event type"),
        ("money as a number", raw(order("x", data__amount=12.5)), "decimal string"),
        ("negative amount", raw(order("x", data__amount="-5.00")), "non-negative"),
        ("absurd amount", raw(order("x", data__amount="99999999999999.00")), "12 integer"),
        ("exponent amount", raw(order("x", data__amount="1e30")), "decimal string"),
        ("no order id", raw(order("x", data__order_id=DELETE)), "order_id"),
        ("bad currency", raw(order("x", data__currency="yuan")), "currency"),
        ("far-future time", raw(order("x", time=far)), "future"),
        ("time without zone", raw(order("x", time="2026-01-01T10:00:00")), "time"),
        ("data not an object", raw(order("x", data="hello")), "data"),
        ("over 1 MB", b'{"pad": "' + b"x" * 1_000_100 + b'"}', "larger than"),
    ]:
        customer = k()
        value = value.replace(b'"subject": "x"', f'"subject": "{customer}"'.encode())
        cases.append((case, "orders.v1", customer, value, word))
    cases.append(("tombstone", "orders.v1", k(), None, "tombstone"))
    other = k()
    cases.append(("key is not the subject", "orders.v1", k(), raw(order(other)), "subject"))
    customer = k()
    cases.append(
        (
            "birthday in 2300",
            "members.v1",
            customer,
            registered(customer, birthday="2300-01-01"),
            "birthday",
        )
    )
    customer = k()
    cases.append(
        ("not an email", "members.v1", customer, registered(customer, email="no-at"), "email")
    )
    customer = k()
    cases.append(
        (
            "a 20,000-character complaint",
            "callcenter.v1",
            customer,
            complaint(customer, description="长" * 20_000),
            "description",
        )
    )
    customer = k()
    cases.append(
        (
            "an agreement's SLA of 0 hours",
            "relations.v1",
            customer,
            agreement_created(customer, first_response_hours=0),
            "first_response_hours",
        )
    )
    customer = k()
    cases.append(
        (
            "a task outcome out of the list",
            "relations.v1",
            customer,
            task_completed(customer, outcome="great"),
            "outcome",
        )
    )
    customer = k()
    cases.append(
        ("a digest of 51 tasks", "relations.v1", customer, digest_due(customer, 51), "tasks")
    )
    return cases


def good_event(topic: str, customer: str) -> bytes:
    if topic == "orders.v1":
        return raw(order(customer))
    if topic == "members.v1":
        return registered(customer)
    if topic == "relations.v1":
        return task_completed(customer)
    return complaint(customer)


def dead_letters(stack: Stack, service: str, keys: set[str], want: int) -> dict[str, Any]:
    """This service's dead letters for `keys` (by key), read until `want` of them are there."""
    records = asyncio.run(
        collect(
            stack.bootstrap,
            f"{service}.dlq.v1",
            lambda r: r.key is not None and r.key.decode() in keys,
            until=lambda kept: len({r.key for r in kept}) >= want,
            timeout=60,
        )
    )
    return {r.key.decode(): r for r in records}


def orders_of(archive: ServiceProcess, customer: str) -> int:
    response = archive.get(f"/customers/{customer}")
    return int(response.json()["value"]["order_count"]) if response.status_code == 200 else 0


def known(archive: ServiceProcess, customer: str) -> bool:
    return archive.get(f"/customers/{customer}").status_code == 200


def reason(record: Any) -> str:
    headers: dict[str, str] = {k: v.decode() for k, v in record.headers}
    return headers["x-dlq-reason"]


def test_every_malformed_event_is_dead_lettered_with_a_reason_and_the_partition_flows(
    stack: Stack, suite: dict[str, ServiceProcess]
) -> None:
    cases = hand_written()
    for _, topic, customer, value, _ in cases:
        asyncio.run(produce(stack.bootstrap, topic, [(customer, value)]))  # type: ignore[list-item]
        # Then a good event on the same key, so the same partition: it must get through.
        asyncio.run(produce(stack.bootstrap, topic, [(customer, good_event(topic, customer))]))
    for service_name in ("archive", "tickets", "loyalty", "notify", "relations"):
        mine = [c for c in cases if service_name in CONSUMERS[c[1]] and refuses(service_name, c[3])]
        keys = {c[2] for c in mine}
        found = dead_letters(stack, service_name, keys, len(keys))
        missing = [c[0] for c in mine if c[2] not in found]
        assert missing == [], f"{service_name} did not dead-letter {missing}"
        for case, _, customer, _, word in mine:
            assert word.lower() in reason(found[customer]).lower(), (service_name, case)
    archive = suite["archive"]
    for _, _, customer, _, _ in cases:
        eventually(partial(known, archive, customer), timeout=60)
    for service in suite.values():
        assert service.proc is not None
        assert service.proc.poll() is None, f"{service.name} crashed"
        assert service.get("/readyz").json()["ready"], service.name


def test_unusual_but_valid_input_is_applied_exactly(
    stack: Stack, suite: dict[str, ServiceProcess]
) -> None:
    customer = key()
    name = "Ĳsbrand 李小龍 Иван ﷺ 🚀\u200d\u202eevil"
    asyncio.run(
        produce(stack.bootstrap, "members.v1", [(customer, registered(customer, name=name))])
    )
    big = order(customer)
    big["padding"] = "x" * 990_000  # unknown attributes are ignored; the event is under 1 MB
    asyncio.run(produce(stack.bootstrap, "orders.v1", [(customer, raw(big))]))
    archive = suite["archive"]

    # The order (orders.v1) proves nothing of the registration (members.v1): wait for both.
    def applied() -> dict[str, Any] | None:
        response = archive.get(f"/customers/{customer}")
        record = dict(response.json()) if response.status_code == 200 else {}
        both = record.get("value", {}).get("order_count") == 1 and record["profile"]["name"]
        return record if both else None

    record = eventually(applied, timeout=60)
    assert record["profile"]["name"] == name


TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
PATHS = [
    "id",
    "source",
    "type",
    "subject",
    "time",
    "specversion",
    "data",
    "data__order_id",
    "data__amount",
    "data__currency",
    "data__channel",
    "data__items",
]
MUTATION = st.tuples(st.sampled_from(PATHS), st.one_of(st.just(DELETE), JSON))


@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(batch=st.lists(st.lists(MUTATION, min_size=1, max_size=3), min_size=60, max_size=60))
def test_random_mutants_are_either_applied_or_dead_lettered_never_lost(
    stack: Stack, suite: dict[str, ServiceProcess], batch: list[list[tuple[str, Any]]]
) -> None:
    refused: set[str] = set()
    applied: set[str] = set()
    messages: list[tuple[str, bytes]] = []
    for mutations in batch:
        customer = key()
        event = order(customer)
        original_id = event["id"]
        for path, value in mutations:
            try:
                order_with(event, path, value)
            except (KeyError, TypeError):
                continue  # the parent was mutated away: nothing to change
        value = raw(event)
        try:
            decoded = decode_event(value)
            check_not_in_the_future(decoded, datetime.now(UTC))
        except EventDecodeError:
            ok = False
        else:
            if decoded.type != "order.placed" or decoded.id != original_id:
                continue  # another valid type, or an id another example may share: not here
            ok = decoded.subject == customer
        (applied if ok else refused).add(customer)
        messages.append((customer, value))
    asyncio.run(produce(stack.bootstrap, "orders.v1", messages))
    print(f"\n{len(refused)} mutants must be refused, {len(applied)} applied")
    assert refused, "the mutations must produce invalid events"
    for service_name in CONSUMERS["orders.v1"]:
        found = dead_letters(stack, service_name, refused, len(refused))
        assert refused <= set(found), f"{service_name} lost {sorted(refused - set(found))}"
        assert not applied & set(found), "a valid event was refused"
    archive = suite["archive"]
    for customer in applied:
        eventually(partial(known, archive, customer), timeout=60)


def order_with(event: dict[str, Any], path: str, value: Any) -> None:
    """Set (or with DELETE remove) the value at `path` (`data__amount`) in place."""
    target = event
    *parents, last = path.split("__")
    for parent in parents:
        target = target[parent]
    if not isinstance(target, dict):
        raise TypeError("not an object")
    if value is DELETE:
        target.pop(last, None)
    else:
        target[last] = value
