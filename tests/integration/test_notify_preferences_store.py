"""Notify's preferences on the real MongoDB-wire server: every write replaces them only over the
version it read, so a member event's batch and a staff change never silently undo each other.

What this protects (issue #18, item 2): before, `save` replaced preferences whole with no
version (an upsert on the id), so the later of two writers that read the same copy won.
Preferences stored before versions existed (no `version` field) are written over as version 0.
"""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from stackutil import Stack, unique

from crm_notify.adapters.mongo import MongoNotifyRepository
from crm_notify.domain.policy import Preferences
from crm_notify.ports import Changes
from crm_runtime.crypto import CustomerKeys, KeyRing
from crm_runtime.errors import ConcurrencyConflictError
from crm_runtime.mongo import Inbox
from crm_runtime.outbox import Outbox
from crm_runtime.uow import UnitOfWork

pytestmark = pytest.mark.integration


@pytest.fixture
async def repository(stack: Stack) -> AsyncIterator[MongoNotifyRepository]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongodb_url, tz_aware=True)
    database = client[unique("crm_notify_prefs").replace("-", "_")]
    uow = UnitOfWork(client, Inbox(database), Outbox(database))
    keys = CustomerKeys(database, KeyRing({"k1": b"1" * 32}, "k1", b"i" * 32))
    yield MongoNotifyRepository(database, uow, keys)
    await client.drop_database(database.name)
    await client.close()


async def stored(repository: MongoNotifyRepository, customer_id: str) -> Preferences:
    return (await repository.preferences([customer_id]))[customer_id]


async def test_the_later_of_two_writers_over_one_version_is_refused(
    repository: MongoNotifyRepository,
) -> None:
    await repository.save(Changes(preferences={"c1": Preferences("c1", email="a@example.com")}))
    staff, batch = await stored(repository, "c1"), await stored(repository, "c1")
    assert staff.version == batch.version == 1
    staff.locale = "en"
    await repository.save(Changes(preferences={"c1": staff}))
    assert staff.version == 2  # what the writer holds is what is stored
    batch.consents = {"email": {"marketing": False}}
    with pytest.raises(ConcurrencyConflictError):
        await repository.save(Changes(preferences={"c1": batch}))
    now = await stored(repository, "c1")
    assert (now.locale, now.consents, now.version) == ("en", {}, 2)
    standing = (await repository.standing(["c1"]))["c1"]  # the send-time check's read
    assert (standing.locale, standing.version, standing.email) == ("en", 2, None)


async def test_a_second_first_write_is_refused_and_an_unversioned_record_is_taken_over(
    repository: MongoNotifyRepository,
) -> None:
    await repository.save(Changes(preferences={"c1": Preferences("c1")}))
    with pytest.raises(ConcurrencyConflictError):  # another writer also saw no record
        await repository.save(Changes(preferences={"c1": Preferences("c1", locale="en")}))
    await repository.preferences_.insert_one({"_id": "old", "locale": "en", "registered": True})
    legacy = await stored(repository, "old")
    assert legacy.version == 0
    legacy.time_zone = "Europe/Berlin"
    await repository.save(Changes(preferences={"old": legacy}))
    assert (await stored(repository, "old")).version == 1
