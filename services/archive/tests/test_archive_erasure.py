"""Erasure in the archive: the person goes, the figures stay, each service's confirmation is kept,
and nothing personal is taken in again afterwards."""

from datetime import timedelta
from typing import Any

import pytest
from archive_fakes import InMemoryCustomers
from test_archive_orders import RULES, T0, Clock, ev, placed, registered

from crm_archive.handlers import apply_events
from crm_contracts import CloudEvent
from crm_contracts.members import v1 as members_v1
from crm_contracts.privacy import v1 as privacy_v1

pytestmark = pytest.mark.unit


def erasure(customer: str, event_id: str = "erase-1") -> CloudEvent[Any]:
    return ev(
        members_v1.CUSTOMER_ERASURE_REQUESTED,
        customer,
        T0 + timedelta(days=1),
        members_v1.CustomerErasureRequested(reason="customer request"),
        event_id,
    )


def confirmed(customer: str, service: str) -> CloudEvent[Any]:
    return ev(
        privacy_v1.CUSTOMER_ERASURE_COMPLETED,
        customer,
        T0 + timedelta(days=1, seconds=2),
        privacy_v1.CustomerErasureCompleted(
            service=service,
            request_event_id="erase-1",
            completed_at=T0 + timedelta(days=1, seconds=1),
        ),
    )


async def run(repo: InMemoryCustomers, *events: CloudEvent[Any]) -> None:
    await apply_events(list(events), repo, clock=Clock(T0 + timedelta(days=1)), rules=RULES)


async def test_erasure_forgets_the_person_keeps_the_figures_and_confirms_once() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0), placed("c1", "o1", "120.00", T0))
    await run(repo, erasure("c1"))
    await run(repo, erasure("c1"))  # redelivered: no second confirmation
    customer = repo.customers["c1"]
    assert customer.profile.name is None
    assert customer.profile.phone is None
    assert customer.profile.email is None
    assert customer.tags == []
    assert customer.value(T0 + timedelta(days=1), RULES).order_count == 1
    confirmations = [
        m.event for m in repo.outbox if m.event.type == privacy_v1.CUSTOMER_ERASURE_COMPLETED
    ]
    assert len(confirmations) == 1
    assert confirmations[0].data.service == "archive"
    assert confirmations[0].data.request_event_id == "erase-1"


async def test_personal_data_arriving_after_the_erasure_is_not_taken_in() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0), erasure("c1"))
    update = ev(
        members_v1.CUSTOMER_PROFILE_UPDATED,
        "c1",
        T0 + timedelta(days=2),
        members_v1.CustomerProfileUpdated(name="韩梅梅", phone="13900139000"),
    )
    await run(repo, update, registered("c1", T0 - timedelta(days=1)))
    assert repo.customers["c1"].profile.name is None
    assert repo.customers["c1"].profile.phone is None


async def test_each_service_confirmation_is_recorded_once() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0), erasure("c1"))
    await run(repo, confirmed("c1", "tickets"), confirmed("c1", "archive"))
    await run(repo, confirmed("c1", "tickets"))
    customer = repo.customers["c1"]
    assert sorted(customer.erasure_confirmations) == ["archive", "tickets"]
    assert customer.erasure_confirmations["tickets"] == T0 + timedelta(days=1, seconds=1)
    assert customer.erasure_request_id == "erase-1"


async def test_in_a_rebuild_without_the_request_the_archive_confirmation_erases_again() -> None:
    repo = InMemoryCustomers()  # members.v1 kept 30 days: the request may be gone, not this
    await run(repo, registered("c1", T0), confirmed("c1", "archive"))
    customer = repo.customers["c1"]
    assert customer.erased_at is not None
    assert customer.profile.name is None
    assert customer.erasure_request_id == "erase-1"


async def test_tags_sent_after_an_erasure_are_not_taken_in_again() -> None:
    """Issue 18, item 4: the member system's tags for an erased customer were stored again."""
    repo = InMemoryCustomers()
    await apply_events(
        [registered("c1", T0), erasure("c1")],
        repo,
        clock=Clock(T0 + timedelta(days=1)),
        rules=RULES,
    )
    later = T0 + timedelta(days=2)
    update = members_v1.CustomerProfileUpdated(tags=["again"], account_owner="agent-9")
    event = ev(members_v1.CUSTOMER_PROFILE_UPDATED, "c1", later, update)
    await apply_events([event], repo, clock=Clock(later), rules=RULES)
    customer = repo.customers["c1"]
    assert customer.tags == []
    assert customer.account_owner == "agent-9", "the owner is not personal data"
