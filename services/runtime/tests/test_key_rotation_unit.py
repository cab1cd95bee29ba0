"""Key rotation never dead-letters (issue #18, item 3): a data key wrapped by a master key this
replica does not hold is a configuration fault, not bad data. The consumer retries without
committing, readiness names the key id (never the key), `crm_master_key_missing_total` counts
it, and an HTTP read answers 503 with a message; no message goes to the dead-letter topic."""

import asyncio
import base64
import json
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from crm_contracts import CloudEvent
from crm_runtime.consumer import MASTER_KEY_CHECK, BatchConsumer
from crm_runtime.crypto import KeyRing, MasterKeyMissingError, cipher_from_document
from crm_runtime.dlq import DeadLetters, InboundRecord
from crm_runtime.errors import is_transient
from crm_runtime.health import Health
from crm_runtime.http import create_http_app
from crm_runtime.metrics import RuntimeMetrics
from crm_runtime.retry import Backoff
from crm_runtime.runtime import Runtime
from crm_runtime.settings import ServiceSettings

pytestmark = pytest.mark.unit
OLD, NEW, INDEX = os.urandom(32), os.urandom(32), os.urandom(32)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def phase_0() -> KeyRing:
    """A replica before the rotation: only the old master key."""
    return KeyRing({"k1": OLD}, "k1", INDEX)


def phase_2() -> KeyRing:
    """A replica after it: both keys, the new one current."""
    return KeyRing({"k1": OLD, "k2": NEW}, "k2", INDEX)


def order(event_id: str) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "t",
            "type": "order.placed",
            "subject": "c1",
            "time": "2026-01-01T00:00:00Z",
            "data": {"order_id": f"o-{event_id}", "amount": "10.00", "currency": "CNY"},
        }
    ).encode()


def data_key_document(customer_id: str) -> dict[str, Any]:
    """A `data_keys` document written by a replica already on the new master key."""
    key_id, wrapped = phase_2().wrap(os.urandom(32), customer_id)
    return {"_id": customer_id, "key_id": key_id, "wrapped": wrapped}


def test_a_data_key_under_a_master_key_not_held_is_a_transient_configuration_fault() -> None:
    document = data_key_document("c1")
    with pytest.raises(MasterKeyMissingError) as caught:
        cipher_from_document(phase_0(), document)
    fault = caught.value
    assert fault.key_id == "k2"
    assert is_transient(fault), "retried, never dead-lettered as bad data"
    assert not isinstance(fault, ValueError), "not taken for a bad value"
    assert "'k2'" in str(fault)
    assert b64(NEW) not in str(fault), "names the key id, never the key"
    assert cipher_from_document(phase_2(), document).key is not None


class Opener:
    """A batch handler that opens each event's customer's data key, as a repository's load does,
    with the master keys `ring` holds (the test swaps it, as a restart with the key would)."""

    def __init__(self, ring: KeyRing, documents: dict[str, dict[str, Any]]) -> None:
        self.ring = ring
        self.documents = documents
        self.persisted: list[str] = []

    async def __call__(self, events: Sequence[CloudEvent[Any]]) -> int:
        for event in events:
            cipher_from_document(self.ring, self.documents[event.subject])
        self.persisted.extend(event.id for event in events)
        return len(events)


async def test_the_consumer_retries_a_missing_master_key_and_dead_letters_nothing() -> None:
    handler = Opener(phase_0(), {"c1": data_key_document("c1")})
    letters: list[dict[str, str]] = []

    async def send(topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        letters.append(headers)

    health = Health()
    registry = CollectorRegistry()
    consumer = BatchConsumer(
        handler,
        DeadLetters(send, service="loyalty", consumer_group="loyalty"),
        health=health,
        metrics=RuntimeMetrics(registry, "loyalty"),
        backoff=Backoff(0.001, 0.002),
        accepted_types=["order.placed"],
    )
    records = [InboundRecord("orders.v1", 0, i, b"c1", order(x)) for i, x in enumerate("ab")]
    task = asyncio.create_task(consumer.process(records))
    for _ in range(500):
        await asyncio.sleep(0.01)
        if MASTER_KEY_CHECK in health.problems() or task.done():
            break
    assert letters == [], "nothing dead-lettered"
    assert not task.done(), "the batch waits (not committed) while the key is missing"
    reason = health.problems()[MASTER_KEY_CHECK]
    assert "'k2'" in reason, "readiness names the missing key id"
    assert b64(NEW) not in reason
    missing = registry.get_sample_value(
        "crm_master_key_missing_total", {"service": "loyalty", "key_id": "k2"}
    )
    assert missing is not None
    assert missing >= 1, "counted for the alert"

    handler.ring = phase_2()  # the key reached this replica
    await asyncio.wait_for(task, timeout=10)
    assert handler.persisted == ["a", "b"], "every event applied, in order"
    assert letters == []
    assert health.problems() == {}, "readiness green again"


class Settings(ServiceSettings):
    service: ClassVar[str] = "loyalty"


def test_an_http_read_meeting_a_missing_master_key_answers_503_not_500() -> None:
    settings = Settings(
        master_keys={"k1": b64(OLD)},
        master_key_id="k1",
        index_key=b64(INDEX),
        api_tokens={"ops-token": {"user": "ops-1", "roles": ["ops"]}},
    )
    runtime = Runtime(settings)
    router = APIRouter()
    document = data_key_document("c1")

    @router.get("/customers/{customer_id}")
    async def read(customer_id: str) -> dict[str, str]:
        cipher_from_document(runtime.keys.ring, document)
        return {"id": customer_id}

    app = create_http_app(runtime, title="t", description="t", routers=[router])
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: no broker needed
    response = client.get("/customers/c1", headers={"Authorization": "Bearer ops-token"})
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable"
    assert "master key" in response.json()["message"]
    assert response.headers["Retry-After"] == "5"
    counted = runtime.registry.get_sample_value(
        "crm_master_key_missing_total", {"service": "loyalty", "key_id": "k2"}
    )
    assert counted == 1
