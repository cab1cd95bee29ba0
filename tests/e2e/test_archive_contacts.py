"""Staff write about a customer on the real stack: an agent logs a visit (the timeline names her
and counts it; a retry with the same Idempotency-Key does not double it; the same key with
another body is refused), writes a note that is listed with her name, the call center's contact
summary is kept; the database holds none of these texts in plaintext; after an erasure every
note and summary is gone."""

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import bson
import httpx
import pytest
from pymongo import AsyncMongoClient
from stackutil import DEV_TOKEN, ServiceProcess, Stack, cloud_event, eventually, send, unique

pytestmark = pytest.mark.e2e
AGENT = "agent-07"
TOKENS = {
    DEV_TOKEN: ["agent", "supervisor", "ops", "integration"],
    "e2e-agent-token": {"user": AGENT, "roles": ["agent"]},
    "e2e-ops-token": {"user": "ops-01", "roles": ["ops"]},
}
AS_AGENT = {"Authorization": "Bearer e2e-agent-token"}
VISIT_SUMMARY = "拜访王小丫，她希望下月续约，电话 13911112222"
CALL_SUMMARY = "王小丫 called about the invoice for 13911112222"
NOTE = "王小丫 prefers calls after 18:00 (私人手机 13911112222)"


@pytest.fixture(scope="module")
def archive(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("archive", stack)
    service.env["CRM_API_TOKENS"] = json.dumps(TOKENS)
    service.start()
    try:
        yield service
    finally:
        service.stop()


def registered(stack: Stack, archive: ServiceProcess) -> str:
    customer = unique("staff")
    data = {"name": "王小丫", "phone": "+86 13911112222"}
    send(stack, "members.v1", (customer, cloud_event("customer.registered", customer, data)))
    eventually(lambda: archive.get(f"/customers/{customer}").status_code == 200, timeout=30)
    return customer


def as_agent(method: str, archive: ServiceProcess, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, archive.url + path, headers=AS_AGENT, timeout=10, **kwargs)


def log_visit(archive: ServiceProcess, customer: str, key: str, **body: Any) -> httpx.Response:
    visit = {
        "channel": "visit",
        "purpose": "renewal",
        "outcome": "interested",
        "summary": VISIT_SUMMARY,
        "next_contact_on": "2027-01-15",
        **body,
    }
    headers = {**AS_AGENT, "Idempotency-Key": key}
    path = f"{archive.url}/customers/{customer}/contacts"
    return httpx.post(path, headers=headers, json=visit, timeout=10)


def contacts_on_the_timeline(archive: ServiceProcess, customer: str) -> list[dict[str, Any]]:
    items = archive.get(f"/customers/{customer}/timeline").json()["items"]
    return [item for item in items if item["type"] == "contact.logged"]


async def archive_dump(stack: Stack, database: str) -> bytes:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url)
    try:
        db = client[database]
        return b"".join(
            [
                bson.encode(doc)
                for name in await db.list_collection_names()
                for doc in await db[name].find().to_list()
            ]
        )
    finally:
        await client.close()


async def sealed_texts(stack: Stack, database: str, customer: str) -> int:
    """How many of the customer's timeline summaries and note texts are still held."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url)
    try:
        db = client[database]
        held = {"customer_id": customer}
        summaries = await db["timeline"].count_documents({**held, "summary": {"$ne": None}})
        return summaries + await db["notes"].count_documents({**held, "text": {"$ne": None}})
    finally:
        await client.close()


def test_staff_contacts_notes_and_call_summaries_are_kept_sealed_and_erased(
    stack: Stack, archive: ServiceProcess
) -> None:
    customer = registered(stack, archive)
    # An agent logs a visit: the timeline shows her user id and the contact.
    first = log_visit(archive, customer, "visit-1")
    assert first.status_code == 201, first.text
    assert first.json()["data"]["by"] == AGENT
    [visit] = contacts_on_the_timeline(archive, customer)
    assert visit["data"] == {
        "channel": "visit",
        "direction": "out",
        "purpose": "renewal",
        "outcome": "interested",
        "next_contact_on": "2027-01-15",
        "by": AGENT,
    }
    assert visit["summary"] == VISIT_SUMMARY
    # A retry with the same key returns the first result and does not double the contact.
    again = log_visit(archive, customer, "visit-1")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert log_visit(archive, customer, "visit-1", summary="another").status_code == 409
    assert len(contacts_on_the_timeline(archive, customer)) == 1
    assert archive.get(f"/customers/{customer}").json()["contacts"] == 1
    # Bad input is a 4xx with a message, never a 500.
    assert log_visit(archive, "nobody-here", "k").status_code == 404
    assert log_visit(archive, customer, "k2", channel="fax").status_code == 422
    assert log_visit(archive, customer, "k3", summary="x" * 10_001).status_code == 422

    # A note is added and listed with its author.
    path = f"/customers/{customer}/notes"
    added = as_agent("POST", archive, path, json={"text": NOTE})
    assert added.status_code == 201, added.text
    for bad in ({"text": "   "}, {"text": "x" * 10_001}, {}):
        refused = as_agent("POST", archive, path, json=bad)
        assert refused.status_code == 422, refused.text
    assert as_agent("POST", archive, "/customers/nobody-here/notes", json={"text": "x"}).is_error
    [note] = as_agent("GET", archive, path).json()["items"]
    assert (note["text"], note["by"]) == (NOTE, AGENT)
    trail = archive.get("/audit/pii-reads", customer_id=customer, actor=AGENT).json()["items"]
    assert "GET /customers/{customer_id}/notes" in [r["route"] for r in trail]

    # The call center's contact summary is kept.
    call = {"contact_id": unique("C"), "agent_id": "cc-9", "channel": "phone", "direction": "in"}
    logged = cloud_event("contact.logged", customer, {**call, "summary": CALL_SUMMARY})
    send(stack, "callcenter.v1", (customer, logged))
    summaries = eventually(
        lambda: (
            {c["summary"] for c in contacts_on_the_timeline(archive, customer)} - {None}
            if len(contacts_on_the_timeline(archive, customer)) == 2
            else None
        )
    )
    assert summaries == {VISIT_SUMMARY, CALL_SUMMARY}

    # The database holds none of these texts in plaintext.
    database = archive.env["CRM_ARCHIVE_DATABASE"]
    dump = asyncio.run(archive_dump(stack, database))
    for text in (VISIT_SUMMARY, CALL_SUMMARY, NOTE, "王小丫", "13911112222"):
        assert text.encode() not in dump, text

    # After an erasure every note and summary is gone.
    request = cloud_event("customer.erasure_requested", customer, {"reason": "PIPL"})
    send(stack, "members.v1", (customer, request))
    eventually(lambda: archive.get(f"/customers/{customer}").json()["erased"], timeout=30)
    assert [c["summary"] for c in contacts_on_the_timeline(archive, customer)] == [None, None]
    assert [n["text"] for n in as_agent("GET", archive, path).json()["items"]] == [None]
    assert as_agent("POST", archive, path, json={"text": NOTE}).status_code == 409
    export = archive.get(f"/customers/{customer}/export").text
    assert not [t for t in ("王小丫", "13911112222", "invoice", "拜访") if t in export]
    # Nothing sealed of them is left either (their key is destroyed, the texts nulled).
    held = asyncio.run(sealed_texts(stack, database, customer))
    assert held == 0
