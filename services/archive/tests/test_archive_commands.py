"""PATCH /customers/{id}, the HTTP command, run on the in-memory fakes: the owner and tags set,
who asked kept on the timeline, the change published once, and a write that lost a race to the
consumer redone on a fresh read."""

from datetime import timedelta

import pytest
from archive_fakes import InMemoryCustomers
from test_archive_orders import RULES, T0, Clock, placed, registered, run

from crm_archive import commands
from crm_archive.domain.customer import Customer, NoCustomerError
from crm_archive.handlers import apply_events
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.topics import ARCHIVE
from crm_runtime.errors import ConcurrencyConflictError

pytestmark = pytest.mark.unit
LATER = T0 + timedelta(days=1)


def patch(customer_id: str, **changes: object) -> commands.PatchCustomer:
    return commands.PatchCustomer(customer_id, changes, by="supervisor-1")


async def test_a_patch_sets_the_owner_and_tags_and_publishes_the_change_once() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0))
    published = len(repo.outbox)
    command = patch("c1", account_owner="agent-7", tags=["vip-care"])
    customer = await commands.patch_customer(command, repo, Clock(LATER), RULES)
    stored = repo.customers["c1"]
    assert (stored.account_owner, stored.tags) == ("agent-7", ["vip-care"])
    assert customer.version == stored.version == 2
    [entry] = [e for e in repo.timeline if e.type == "customer.patched"]
    assert (entry.at, entry.data) == (
        LATER,
        {"fields": ["account_owner", "tags"], "by": "supervisor-1"},
    )
    [updated] = [m for m in repo.outbox[published:] if m.topic == ARCHIVE.name]
    assert updated.event.type == archive_v1.CUSTOMER_UPDATED
    assert updated.event.data.changed == ["account_owner", "tags"]


async def test_a_patch_that_changes_nothing_publishes_nothing() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0))
    await commands.patch_customer(patch("c1", account_owner="agent-7"), repo, Clock(LATER), RULES)
    published = len(repo.outbox)
    await commands.patch_customer(patch("c1", account_owner="agent-7"), repo, Clock(LATER), RULES)
    assert len(repo.outbox) == published
    assert repo.customers["c1"].account_owner == "agent-7"


async def test_a_patch_of_an_unknown_customer_is_refused_and_writes_nothing() -> None:
    repo = InMemoryCustomers()
    with pytest.raises(NoCustomerError):
        await commands.patch_customer(patch("nobody", tags=["x"]), repo, Clock(LATER), RULES)
    assert (repo.customers, repo.timeline, repo.outbox) == ({}, [], [])


class Racing(InMemoryCustomers):
    """The consumer applies an order between the command's read and its write, `races` times."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races
        self.reads = 0

    async def get(self, customer_id: str) -> Customer | None:
        customer = await super().get(customer_id)
        self.reads += 1
        if self.races:
            self.races -= 1
            order = placed(customer_id, f"o{self.reads}", "10.00", T0)
            await apply_events([order], self, clock=Clock(T0), rules=RULES)
        return customer


async def test_a_patch_that_lost_a_race_to_the_consumer_is_redone_on_a_fresh_read() -> None:
    repo = Racing(races=0)
    await run(repo, registered("c1", T0))
    repo.races = 2
    command = patch("c1", account_owner="agent-7")
    await commands.patch_customer(command, repo, Clock(LATER), RULES)
    stored = repo.customers["c1"]
    # Neither the consumer's orders nor the staff change is lost; the change is saved once.
    assert (repo.reads, sorted(stored.orders), stored.account_owner) == (3, ["o1", "o2"], "agent-7")
    assert [e.type for e in repo.timeline].count("customer.patched") == 1
    assert repo.published("c1").count(archive_v1.CUSTOMER_UPDATED) == 1


async def test_a_patch_that_keeps_losing_the_race_gives_up_with_the_conflict() -> None:
    repo = Racing(races=0)
    await run(repo, registered("c1", T0))
    repo.races = 5
    with pytest.raises(ConcurrencyConflictError):
        await commands.patch_customer(patch("c1", tags=["x"]), repo, Clock(LATER), RULES)
    assert repo.customers["c1"].tags == []
    assert "customer.patched" not in [e.type for e in repo.timeline]
