"""Staff enter and edit customers (issue 17), the commands run on the in-memory fakes: a
customer entered is registered and evaluated like one from the member system and announced on
members.v1 as such; the echo of what the archive announced changes nothing; a retry with the
same key gives the first customer; a phone on file is a duplicate unless allowed; every profile
field, tag and consent can be edited on the version read; nothing personal is taken in for an
erased customer."""

from datetime import date, timedelta
from typing import Any

import pytest
from archive_fakes import InMemoryCustomers
from test_archive_orders import RULES, T0, Clock, ev, registered, run

from crm_archive import commands
from crm_archive.handlers import apply_events
from crm_archive.ports import CustomerFilter
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.topics import ARCHIVE, MEMBERS

pytestmark = pytest.mark.unit
LATER = T0 + timedelta(days=1)
AGENT = "agent-07"


def registration(**fields: Any) -> members_v1.CustomerRegistered:
    given: dict[str, Any] = {
        "type": "company",
        "name": "韩梅梅",
        "phone": "+86 13700137000",
        "email": "han.meimei@example.com",
        "birthday": date(1990, 5, 4),
        "city": "杭州",
        "address": "西湖区文三路 90 号",
        "company": "杭州茶叶有限公司",
        "job_title": "采购经理",
        "tags": ["wholesale"],
        "consents": {"email": {"transactional": True, "marketing": True}},
        "account_owner": "sup-01",
        **fields,
    }
    return members_v1.CustomerRegistered.model_validate(given)


def create(key: str = "row-1", by: str = AGENT, **fields: Any) -> commands.CreateCustomer:
    allow = fields.pop("allow_duplicate", False)
    return commands.CreateCustomer(registration(**fields), key, by, allow_duplicate=allow)


async def enter(repo: InMemoryCustomers, command: commands.CreateCustomer) -> commands.Entered:
    return await commands.create_customer(command, repo, Clock(T0), RULES)


def on(repo: InMemoryCustomers, topic: str) -> list[Any]:
    return [m.event for m in repo.outbox if m.topic == topic]


async def test_a_customer_entered_is_registered_evaluated_and_announced_as_a_registration() -> None:
    repo = InMemoryCustomers()
    done = await enter(repo, create())
    customer = repo.customers[done.customer.id]
    assert not done.replayed
    assert not customer.stub
    profile = customer.profile
    assert (profile.type, profile.address, profile.company, profile.job_title) == (
        "company",
        "西湖区文三路 90 号",
        "杭州茶叶有限公司",
        "采购经理",
    )
    assert (profile.source, customer.account_owner, customer.tags) == (
        "staff",
        "sup-01",
        ["wholesale"],
    )
    assert (customer.grade, customer.stage) == ("potential", "potential")
    [entry] = repo.timeline
    assert (entry.type, entry.data["by"], entry.data["type"]) == (
        "customer.created",
        AGENT,
        "company",
    )
    assert "address" in entry.data["fields"]
    assert "韩梅梅" not in str(entry.data)
    [announced] = on(repo, MEMBERS.name)
    assert (announced.type, announced.source, announced.subject) == (
        members_v1.CUSTOMER_REGISTERED,
        "crm/archive",
        customer.id,
    )
    assert (announced.data.address, announced.data.source) == ("西湖区文三路 90 号", "staff")
    [created] = on(repo, ARCHIVE.name)
    assert (created.type, created.data.stub) == (archive_v1.CUSTOMER_CREATED, False)


async def test_the_echo_of_a_registration_the_archive_announced_changes_nothing() -> None:
    repo = InMemoryCustomers()
    done = await enter(repo, create())
    [announced] = on(repo, MEMBERS.name)
    before = (repo.customers[done.customer.id].version, len(repo.timeline), len(repo.outbox))
    assert await apply_events([announced], repo, clock=Clock(LATER), rules=RULES) == 0
    after = (repo.customers[done.customer.id].version, len(repo.timeline), len(repo.outbox))
    assert after == before


async def test_a_retry_with_the_same_key_gives_the_first_customer_and_another_body_is_refused() -> (
    None
):
    repo = InMemoryCustomers()
    first = await enter(repo, create())
    again = await enter(repo, create())
    assert again.replayed
    assert again.customer.id == first.customer.id
    assert (len(repo.customers), len(repo.outbox)) == (1, 2)
    with pytest.raises(commands.IdempotencyKeyReusedError):
        await enter(repo, create(city="上海"))
    # Keys are the caller's own: another person's same key is another customer.
    other = await enter(repo, create(by="agent-08", allow_duplicate=True))
    assert other.customer.id != first.customer.id


async def test_a_phone_or_email_on_file_is_a_duplicate_unless_allowed() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("m1", T0, phone="+86 137 0013 7000"))
    with pytest.raises(commands.DuplicateCustomerError) as refused:
        await enter(repo, create(email=None))
    assert refused.value.existing == ["m1"]
    with pytest.raises(commands.DuplicateCustomerError):
        await enter(repo, create("row-2", phone=None, email="LI.LEI@example.com"))
    assert list(repo.customers) == ["m1"]
    done = await enter(repo, create(allow_duplicate=True))
    assert sorted(repo.customers) == sorted(["m1", done.customer.id])


async def entered_and_read(repo: InMemoryCustomers) -> tuple[str, int]:
    done = await enter(repo, create())
    return done.customer.id, repo.customers[done.customer.id].version


async def test_a_patch_of_profile_fields_and_consents_announces_only_what_changed() -> None:
    repo = InMemoryCustomers()
    customer_id, version = await entered_and_read(repo)
    changes: dict[str, object] = {
        "job_title": "总经理",
        "address": None,
        "city": "杭州",  # unchanged
        "consents": {
            "email": {"marketing": False, "transactional": True},
            "sms": {"marketing": True},
        },
    }
    command = commands.PatchCustomer(customer_id, changes, AGENT, expected_version=version)
    saved = await commands.patch_customer(command, repo, Clock(LATER), RULES)
    assert (saved.profile.job_title, saved.profile.address) == ("总经理", None)
    assert saved.consents == {
        "email": {"transactional": True, "marketing": False},
        "sms": {"marketing": True},
    }
    updated, *consents = on(repo, MEMBERS.name)[1:]
    assert updated.type == members_v1.CUSTOMER_PROFILE_UPDATED
    assert updated.data.model_dump(exclude_unset=True) == {"address": None, "job_title": "总经理"}
    assert [(e.data.channel, e.data.purpose, e.data.granted) for e in consents] == [
        ("email", "marketing", False),
        ("sms", "marketing", True),
    ]
    [entry] = [e for e in repo.timeline if e.type == "customer.patched"]
    assert entry.data == {"fields": ["address", "city", "consents", "job_title"], "by": AGENT}
    # What it announced comes back on members.v1 and changes nothing.
    stored = repo.customers[customer_id].version
    echoes = on(repo, MEMBERS.name)[1:]
    assert await apply_events(echoes, repo, clock=Clock(LATER), rules=RULES) == 0
    assert repo.customers[customer_id].version == stored


async def test_a_patch_on_a_stale_version_is_refused_and_writes_nothing() -> None:
    repo = InMemoryCustomers()
    customer_id, version = await entered_and_read(repo)
    await commands.patch_customer(
        commands.PatchCustomer(customer_id, {"name": "韩梅"}, AGENT, version),
        repo,
        Clock(LATER),
        RULES,
    )
    written = (len(repo.timeline), len(repo.outbox))
    stale = commands.PatchCustomer(customer_id, {"name": "韩"}, AGENT, version)
    with pytest.raises(commands.StaleVersionError) as refused:
        await commands.patch_customer(stale, repo, Clock(LATER), RULES)
    assert refused.value.current == version + 1
    assert (len(repo.timeline), len(repo.outbox)) == written
    assert repo.customers[customer_id].profile.name == "韩梅"


async def test_nothing_personal_is_taken_in_for_an_erased_customer() -> None:
    repo = InMemoryCustomers()
    customer_id, _ = await entered_and_read(repo)
    erasure = ev(
        members_v1.CUSTOMER_ERASURE_REQUESTED,
        customer_id,
        LATER,
        members_v1.CustomerErasureRequested(),
    )
    await run(repo, erasure, now=LATER)
    [created] = [e for e in repo.timeline if e.type == "customer.created"]
    assert created.request is None  # the request kept to compare retries is erased too
    personal: list[dict[str, object]] = [
        {"address": "x"},
        {"tags": ["x"]},
        {"consents": {"email": {"marketing": True}}},
    ]
    for changes in personal:
        command = commands.PatchCustomer(customer_id, changes, AGENT)
        with pytest.raises(commands.CustomerErasedError):
            await commands.patch_customer(command, repo, Clock(LATER), RULES)
    # Tags from the member system are not taken in again either (issue 18, item 4).
    tags = members_v1.CustomerProfileUpdated(tags=["again"], company="x")
    await run(repo, ev(members_v1.CUSTOMER_PROFILE_UPDATED, customer_id, LATER, tags), now=LATER)
    customer = repo.customers[customer_id]
    assert (customer.tags, customer.profile.company, customer.profile.type) == ([], None, "company")
    # The owner is not personal data: it can still be set.
    owner = commands.PatchCustomer(customer_id, {"account_owner": "sup-02"}, "sup-01")
    assert (
        await commands.patch_customer(owner, repo, Clock(LATER), RULES)
    ).account_owner == "sup-02"
    # A retry of the creation still answers the (erased) customer.
    assert (await enter(repo, create())).replayed


async def test_the_list_filters_by_type() -> None:
    repo = InMemoryCustomers()
    company, _ = await entered_and_read(repo)
    await run(repo, registered("m1", T0, phone="+86 13900000000"))
    companies = await repo.find(CustomerFilter(type="company"), None, 10)
    people = await repo.find(CustomerFilter(type="person"), None, 10)
    assert ([r.id for r in companies], [r.id for r in people]) == ([company], ["m1"])
