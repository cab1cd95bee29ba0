"""What the archive takes from `relations.v1`: a completed follow-up task is a contact on the
timeline by the person who did it; an agreement makes an agreement customer (协议客户) from its
first day to its last, and a rebuild at any time gives the same answer."""

import os
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import bson
import pytest
from archive_fakes import InMemoryCustomers

from crm_archive.adapters.documents import from_document, to_document
from crm_archive.domain.rules import ArchiveRules
from crm_archive.handlers import apply_events, review
from crm_archive.ports import CustomerFilter, CustomerSort
from crm_contracts import CloudEvent, new_event
from crm_contracts.relations import v1 as relations_v1
from crm_runtime.crypto import NO_KEY, KeyRing

pytestmark = pytest.mark.unit
# Monday 4 Jan 2027, 10:00 in Shanghai.
T0 = datetime(2027, 1, 4, 2, 0, tzinfo=UTC)
RULES = ArchiveRules()
TERMS = relations_v1.AgreementTerms(
    period="quarter",
    measure="spend",
    minimum=Decimal("100000"),
    currency="CNY",
    first_response_hours=4,
    renewal_notice_days=30,
)
RING = KeyRing({"k": os.urandom(32)}, "k", os.urandom(32))
_ids = iter(range(1_000_000))


def ev(event_type: str, at: datetime, data: Any, customer: str = "c1") -> CloudEvent[Any]:
    return new_event(
        event_type,
        source="crm/relations",
        subject=customer,
        data=data,
        time=at,
        id=f"r{next(_ids)}",
    )


def completed(at: datetime, outcome: relations_v1.Outcome = "reached") -> CloudEvent[Any]:
    return ev(
        relations_v1.TASK_COMPLETED,
        at,
        relations_v1.TaskCompleted(
            task_id="t1",
            kind="follow_up",
            by="u-lin",
            outcome=outcome,
            completed_at=at,
            due_at=at + timedelta(days=1),
            on_time=True,
        ),
    )


def created(starts_on: date, ends_on: date, agreement_id: str = "a1") -> CloudEvent[Any]:
    return ev(
        relations_v1.AGREEMENT_CREATED,
        T0,
        relations_v1.AgreementCreated(
            agreement_id=agreement_id,
            number=f"XY-{agreement_id}",
            owner="u-lin",
            starts_on=starts_on,
            ends_on=ends_on,
            terms=TERMS,
        ),
    )


def terminated(on: date, agreement_id: str = "a1") -> CloudEvent[Any]:
    return ev(
        relations_v1.AGREEMENT_TERMINATED,
        T0,
        relations_v1.AgreementTerminated(agreement_id=agreement_id, terminated_on=on, by="u-boss"),
    )


def renewed(ends_on: date, previous: date, agreement_id: str = "a1") -> CloudEvent[Any]:
    return ev(
        relations_v1.AGREEMENT_RENEWED,
        T0,
        relations_v1.AgreementRenewed(
            agreement_id=agreement_id,
            starts_on=date(2027, 1, 1),
            ends_on=ends_on,
            previous_ends_on=previous,
            by="u-boss",
        ),
    )


async def apply(repo: InMemoryCustomers, events: list[CloudEvent[Any]], now: datetime) -> None:
    await apply_events(events, repo, clock=lambda: now, rules=RULES)


async def test_a_completed_task_is_a_contact_on_the_timeline_by_the_user_who_did_it() -> None:
    repo = InMemoryCustomers()
    await apply(repo, [completed(T0)], T0)
    [entry] = await repo.timeline_page("c1", None, 10, newest_first=True)
    assert (entry.type, entry.data["by"], entry.data["outcome"], entry.data["purpose"]) == (
        relations_v1.TASK_COMPLETED,
        "u-lin",
        "reached",
        "follow_up",
    )
    assert entry.summary is None  # the task's summary stays in relations
    assert repo.customers["c1"].contacts == 1


async def test_a_task_done_without_reaching_the_customer_is_on_the_timeline_but_no_contact() -> (
    None
):
    repo = InMemoryCustomers()
    await apply(repo, [completed(T0, "not_reached")], T0)
    assert len(await repo.timeline_page("c1", None, 10, newest_first=True)) == 1
    assert repo.customers["c1"].contacts == 0


async def test_a_redelivered_task_completion_counts_once() -> None:
    repo = InMemoryCustomers()
    event = completed(T0)
    await apply(repo, [event], T0)
    await apply(repo, [event], T0)
    assert repo.customers["c1"].contacts == 1


async def test_an_agreement_customer_from_the_first_day_to_the_last_in_the_rules_zone() -> None:
    repo = InMemoryCustomers()
    await apply(repo, [created(date(2027, 1, 5), date(2027, 3, 31))], T0)
    assert repo.customers["c1"].agreement_numbers == []  # it starts tomorrow
    # Tuesday 5 Jan 00:00 in Shanghai is Monday 16:00 UTC: the review sweep flips it then.
    assert repo.customers["c1"].next_review_at == datetime(2027, 1, 4, 16, 0, tzinfo=UTC)
    await review(datetime(2027, 1, 4, 16, 0, tzinfo=UTC), repo, rules=RULES)
    assert repo.customers["c1"].agreement_numbers == ["XY-a1"]
    await review(datetime(2027, 3, 31, 15, 59, tzinfo=UTC), repo, rules=RULES)
    assert repo.customers["c1"].agreement_numbers == ["XY-a1"]  # 23:59 on its last day
    await review(datetime(2027, 3, 31, 16, 0, tzinfo=UTC), repo, rules=RULES)
    assert repo.customers["c1"].agreement_numbers == []


async def test_a_terminated_agreement_ends_the_agreement_customer_after_its_day() -> None:
    repo = InMemoryCustomers()
    await apply(repo, [created(date(2027, 1, 1), date(2027, 12, 31))], T0)
    await apply(repo, [terminated(date(2027, 1, 3))], T0)
    assert repo.customers["c1"].agreement_numbers == []


async def test_a_renewal_keeps_the_customer_an_agreement_customer_past_the_old_end() -> None:
    repo = InMemoryCustomers()
    await apply(repo, [created(date(2027, 1, 1), date(2027, 1, 31))], T0)
    await apply(repo, [renewed(date(2027, 12, 31), date(2027, 1, 31))], T0)
    await review(datetime(2027, 6, 1, tzinfo=UTC), repo, rules=RULES)
    assert repo.customers["c1"].agreement_numbers == ["XY-a1"]


async def test_the_list_filters_agreement_customers() -> None:
    repo = InMemoryCustomers()
    await apply(repo, [created(date(2027, 1, 1), date(2027, 12, 31))], T0)
    await apply(repo, [completed(T0)], T0)  # c1 again: still one customer
    await apply(repo, [ev(relations_v1.TASK_COMPLETED, T0, completed(T0).data, "c2")], T0)
    with_agreement = await repo.find(
        CustomerFilter(agreement_customer=True), CustomerSort(), None, 10
    )
    without = await repo.find(CustomerFilter(agreement_customer=False), CustomerSort(), None, 10)
    assert ([r.id for r in with_agreement], [r.id for r in without]) == (["c1"], ["c2"])


async def test_a_record_holds_a_bounded_number_of_agreements() -> None:
    repo = InMemoryCustomers()
    events = [created(date(2000 + n, 1, 1), date(2000 + n, 12, 31), f"a{n}") for n in range(1, 31)]
    await apply(repo, events, T0)
    held = repo.customers["c1"].agreements
    assert sorted(held) == sorted(f"a{n}" for n in range(11, 31))


async def test_the_stored_record_gives_back_its_agreements() -> None:
    repo = InMemoryCustomers()
    await apply(repo, [created(date(2027, 1, 1), date(2027, 12, 31))], T0)
    customer = repo.customers["c1"]
    document = to_document(customer, NO_KEY, RING)
    assert document["agreement_customer"] is True
    back = from_document(bson.decode(bson.encode(document)), NO_KEY)
    assert (back.agreements, back.agreement_numbers) == (
        customer.agreements,
        customer.agreement_numbers,
    )
