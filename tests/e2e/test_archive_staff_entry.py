"""Staff enter and edit customers on the real stack, all four services (issue 17): an agent
enters a company contact (201, a retry with the same key 200), a second customer with the same
phone is refused with the existing id (409) unless `allow_duplicate=true`; she edits a field on a
stale version (412), without If-Match (428), on the version she read (200); she cannot set the
owner (403); she logs a visit; the timeline names her on the creation, the edit and the visit.
The archive announces the customer on members.v1 like a registration: loyalty enrols them and
notify sends them the welcome e-mail; the archive's own consumer takes the echo as a duplicate
and changes nothing; her order's lines show as product preferences; archive.v1 (kept forever)
carries none of the personal data."""

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from stackutil import (
    DEV_TOKEN,
    ServiceProcess,
    SmtpServer,
    Stack,
    cloud_event,
    collect,
    eventually,
    running_suite,
    send,
    unique,
)

pytestmark = pytest.mark.e2e
AGENT = "agent-07"
SUPERVISOR = "sup-01"
TOKENS = {
    DEV_TOKEN: ["agent", "supervisor", "ops", "integration"],
    "entry-agent-token": {"user": AGENT, "roles": ["agent"]},
    "entry-sup-token": {"user": SUPERVISOR, "roles": ["supervisor"]},
}
AS_AGENT = {"Authorization": "Bearer entry-agent-token"}
AS_SUPERVISOR = {"Authorization": "Bearer entry-sup-token"}


@pytest.fixture(scope="module")
def suite(stack: Stack, smtp: SmtpServer) -> Iterator[dict[str, ServiceProcess]]:
    with running_suite(stack, smtp, CRM_API_TOKENS=json.dumps(TOKENS)) as services:
        yield services


def call(
    method: str,
    archive: ServiceProcess,
    path: str,
    headers: dict[str, str] | None = None,
    as_whom: dict[str, str] = AS_AGENT,
    **kwargs: Any,
) -> httpx.Response:
    return httpx.request(
        method, archive.url + path, headers={**as_whom, **(headers or {})}, timeout=30, **kwargs
    )


def new_customer(tag: str) -> dict[str, Any]:
    return {
        "type": "company",
        "name": "韩梅梅",
        "phone": f"+86 137{abs(hash(tag)) % 10**8:08d}",
        "email": f"{tag}@example.com",
        "city": "杭州",
        "address": f"西湖区文三路 {tag} 号",
        "company": f"杭州茶叶 {tag} 有限公司",
        "job_title": "采购经理",
        "tags": ["wholesale"],
        "consents": {"email": {"transactional": True, "marketing": False}},
    }


def create(
    archive: ServiceProcess, body: dict[str, Any], key: str, **params: Any
) -> httpx.Response:
    return call(
        "POST", archive, "/customers", {"Idempotency-Key": key}, json=body, params=params or None
    )


def test_an_agent_enters_and_edits_a_customer_that_every_service_learns_of(
    stack: Stack, suite: dict[str, ServiceProcess], smtp: SmtpServer
) -> None:
    archive = suite["archive"]
    tag = unique("entry")
    body = new_customer(tag)
    created = create(archive, body, f"{tag}-1")
    assert created.status_code == 201, created.text
    customer = created.json()
    customer_id = customer["id"]
    assert customer["profile"]["type"] == "company"
    assert customer["profile"]["address"] == body["address"]
    assert (customer["stage"], customer["stub"]) == ("potential", False)
    assert created.headers["ETag"] == '"1"'
    # A retry with the same key gives the first customer; the same key with another body is not.
    again = create(archive, body, f"{tag}-1")
    assert (again.status_code, again.json()["id"]) == (200, customer_id)
    assert create(archive, {**body, "city": "上海"}, f"{tag}-1").status_code == 409
    # The same phone is on file: 409 with the existing id, unless a duplicate is allowed.
    twin = {**body, "email": f"{tag}-twin@example.com"}
    refused = create(archive, twin, f"{tag}-2")
    assert refused.status_code == 409, refused.text
    assert refused.json()["existing"] == [customer_id]
    allowed = create(archive, twin, f"{tag}-2", allow_duplicate="true")
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["id"] != customer_id
    invalid = create(archive, {**body, "email": "not-an-email"}, f"{tag}-3")
    assert invalid.status_code == 422, invalid.text

    # Edits: on a stale version 412, without If-Match 428, on the version read 200.
    path = f"/customers/{customer_id}"
    read = call("GET", archive, path)
    version = read.headers["ETag"]
    change = {"job_title": "总经理", "consents": {"email": {"marketing": True}}}
    stale = call("PATCH", archive, path, {"If-Match": '"0"'}, json=change)
    assert stale.status_code == 412, stale.text
    assert call("PATCH", archive, path, json=change).status_code == 428
    owner = call("PATCH", archive, path, {"If-Match": version}, json={"account_owner": AGENT})
    assert owner.status_code == 403, owner.text
    edited = call("PATCH", archive, path, {"If-Match": version}, json=change)
    assert edited.status_code == 200, edited.text
    assert edited.json()["profile"]["job_title"] == "总经理"
    assert edited.json()["consents"]["email"] == {"transactional": True, "marketing": True}
    assert edited.headers["ETag"] != version
    given_owner = call(
        "PATCH",
        archive,
        path,
        {"If-Match": edited.headers["ETag"]},
        as_whom=AS_SUPERVISOR,
        json={"account_owner": AGENT},
    )
    assert given_owner.status_code == 200, given_owner.text
    # A visit.
    visit = {"channel": "visit", "purpose": "renewal", "summary": "拜访韩梅梅"}
    logged = call(
        "POST", archive, f"{path}/contacts", {"Idempotency-Key": f"{tag}-visit"}, json=visit
    )
    assert logged.status_code == 201, logged.text
    assert logged.headers["ETag"]
    # The timeline names her on the creation, the edit and the visit.
    timeline = call("GET", archive, f"{path}/timeline").json()["items"]
    by = {(entry["type"], entry["data"].get("by")) for entry in timeline}
    assert {
        ("customer.created", AGENT),
        ("customer.patched", AGENT),
        ("contact.logged", AGENT),
        ("customer.patched", SUPERVISOR),
    } <= by
    assert "customer.registered" not in {entry["type"] for entry in timeline}
    [creation] = [entry for entry in timeline if entry["type"] == "customer.created"]
    assert "address" in creation["data"]["fields"]
    assert body["address"] not in json.dumps(timeline)

    # The other services learn of her as of a registration: loyalty enrols her, notify welcomes.
    loyalty, notify = suite["loyalty"], suite["notify"]
    eventually(lambda: loyalty.get(f"/accounts/{customer_id}").status_code == 200, timeout=60)
    eventually(lambda: smtp.mailbox.to(body["email"]), timeout=60)
    welcome = notify.get("/notifications", customer_id=customer_id, template="welcome").json()
    assert len(welcome["items"]) == 1
    # The archive takes its own announcements back as duplicates and changes nothing.
    settled = call("GET", archive, path)
    # Five echoes on members.v1: her registration, profile update, consent change and owner
    # change, and the twin's registration (another key, maybe another partition).
    eventually(lambda: archive.metric("crm_events_duplicate_total") >= 5, timeout=60)
    assert call("GET", archive, path).headers["ETag"] == settled.headers["ETag"]
    # Her orders' lines make her product preferences (12 months, by spend).
    items = [
        {"sku": "tea-longjing", "category": "tea", "qty": 2, "unit_price": "300.00"},
        {"sku": "cup-celadon", "category": "ware", "qty": 4, "unit_price": "25.00"},
    ]
    order = {"order_id": unique("o"), "amount": "700.00", "currency": "CNY", "items": items}
    send(stack, "orders.v1", (customer_id, cloud_event("order.placed", customer_id, order)))
    preferences = eventually(
        lambda: call("GET", archive, path).json()["preferences"]["skus"], timeout=30
    )
    assert preferences == [
        {"sku": "tea-longjing", "spend": "600.00"},
        {"sku": "cup-celadon", "spend": "100.00"},
    ]
    categories = call("GET", archive, path).json()["preferences"]["categories"]
    assert categories == [
        {"category": "tea", "spend": "600.00"},
        {"category": "ware", "spend": "100.00"},
    ]
    # archive.v1 is kept forever: it names the fields that changed, never their values.
    events = asyncio.run(
        collect(
            stack.bootstrap,
            "archive.v1",
            lambda r: r.key == customer_id.encode(),
            until=lambda kept: len(kept) >= 3,
        )
    )
    assert events, "the archive announced the customer on archive.v1"
    for needle in (body["address"], body["company"], body["email"], "总经理"):
        assert not any(needle.encode() in record.value for record in events), needle
