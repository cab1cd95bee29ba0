"""What staff write about a customer, run on the in-memory fakes: a contact they made (on the
timeline with who made it, counted, idempotent by its key), the call center's contact summaries
kept, internal notes (author, time, newest first), and an erasure that takes every summary and
note text with it."""

from datetime import date, timedelta
from typing import Any

import pytest
from archive_fakes import InMemoryCustomers
from test_archive_erasure import erasure
from test_archive_orders import RULES, T0, Clock, ev, placed, registered, run

from crm_archive import commands
from crm_archive.domain.customer import NoCustomerError
from crm_contracts import CloudEvent
from crm_contracts.callcenter import v1 as callcenter_v1

pytestmark = pytest.mark.unit
LATER = T0 + timedelta(days=1)
SUMMARY = "王女士 asked about the winter catalogue; call back after the 15th"


def visit(customer_id: str = "c1", key: str = "k1", **changes: Any) -> commands.LogContact:
    fields: dict[str, Any] = {
        "channel": "visit",
        "direction": "out",
        "purpose": "renewal",
        "outcome": "interested",
        "summary": SUMMARY,
        "next_contact_on": date(2026, 3, 15),
        "by": "agent-07",
    }
    return commands.LogContact(customer_id, key, **{**fields, **changes})


def called_in(
    customer_id: str, summary: str | None, at: Any = T0, topic: str | None = None
) -> CloudEvent[Any]:
    return ev(
        callcenter_v1.CONTACT_LOGGED,
        customer_id,
        at,
        callcenter_v1.ContactLogged(
            contact_id="cc-1",
            agent_id="a-1",
            channel="phone",
            direction="in",
            summary=summary,
            topic=topic,
        ),
    )


async def test_a_contact_goes_on_the_timeline_with_who_made_it_and_counts() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0))
    done = await commands.log_contact(visit(), repo, Clock(LATER), RULES)
    assert not done.replayed
    [entry] = [e for e in repo.timeline if e.type == "contact.logged"]
    assert entry == done.entry
    assert (entry.at, entry.summary) == (LATER, SUMMARY)
    assert entry.data == {
        "channel": "visit",
        "direction": "out",
        "purpose": "renewal",
        "outcome": "interested",
        "next_contact_on": "2026-03-15",
        "by": "agent-07",
    }
    assert repo.customers["c1"].contacts == 1


async def test_a_retry_with_the_same_key_returns_the_first_contact_and_counts_once() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0))
    first = await commands.log_contact(visit(), repo, Clock(LATER), RULES)
    again = await commands.log_contact(visit(), repo, Clock(LATER + timedelta(1)), RULES)
    assert (again.replayed, again.entry) == (True, first.entry)
    assert repo.customers["c1"].contacts == 1
    assert [e.type for e in repo.timeline].count("contact.logged") == 1


@pytest.mark.parametrize(
    "other", [{"summary": "something else"}, {"channel": "call"}, {"next_contact_on": None}]
)
async def test_the_same_key_with_another_contact_is_refused(other: dict[str, Any]) -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0))
    await commands.log_contact(visit(), repo, Clock(LATER), RULES)
    with pytest.raises(commands.IdempotencyKeyReusedError):
        await commands.log_contact(visit(**other), repo, Clock(LATER), RULES)
    assert repo.customers["c1"].contacts == 1


async def test_the_same_key_for_another_customer_is_another_contact() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0), registered("c2", T0))
    await commands.log_contact(visit("c1"), repo, Clock(LATER), RULES)
    done = await commands.log_contact(visit("c2"), repo, Clock(LATER), RULES)
    assert not done.replayed
    assert repo.customers["c2"].contacts == 1


async def test_a_contact_or_note_for_an_unknown_customer_is_refused_and_writes_nothing() -> None:
    repo = InMemoryCustomers()
    with pytest.raises(NoCustomerError):
        await commands.log_contact(visit("nobody"), repo, Clock(LATER), RULES)
    with pytest.raises(NoCustomerError):
        await commands.add_note(commands.AddNote("nobody", "x", "agent-07"), repo, Clock(LATER))
    assert (repo.customers, repo.timeline, repo.notes) == ({}, [], [])


async def test_the_call_centers_contact_summary_is_kept_with_its_entry() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0), called_in("c1", SUMMARY))
    [entry] = [e for e in repo.timeline if e.type == "contact.logged"]
    assert entry.summary == SUMMARY
    assert "summary" not in entry.data  # data holds no personal data


async def test_the_call_centers_topic_is_sealed_with_the_entry_and_erased_with_it() -> None:
    """Issue 18, item 4: the topic is what a person typed; it was kept in plain `data`."""
    repo = InMemoryCustomers()
    topic = "王女士的退款投诉"
    await run(repo, registered("c1", T0), called_in("c1", None, topic=topic))
    [entry] = [e for e in repo.timeline if e.type == "contact.logged"]
    assert entry.topic == topic
    assert topic not in str(entry.data)
    await run(repo, erasure("c1"), now=LATER)
    [erased] = [e for e in repo.timeline if e.type == "contact.logged"]
    assert erased.topic is None


async def test_notes_are_listed_newest_first_with_author_and_time_page_by_page() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0))
    for day, author in ((1, "agent-07"), (2, "sup-01"), (3, "agent-07")):
        command = commands.AddNote("c1", f"note {day}", by=author)
        await commands.add_note(command, repo, Clock(T0 + timedelta(days=day)))
    first = await repo.notes_page("c1", None, 2)
    assert [(n.text, n.by) for n in first] == [("note 3", "agent-07"), ("note 2", "sup-01")]
    rest = await repo.notes_page("c1", (first[-1].at, first[-1].note_id), 2)
    assert [(n.text, n.at) for n in rest] == [("note 1", T0 + timedelta(days=1))]


async def test_an_erasure_takes_every_note_and_summary_and_refuses_new_ones() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0), called_in("c1", "call-center summary"))
    await commands.log_contact(visit(), repo, Clock(LATER), RULES)
    await commands.add_note(commands.AddNote("c1", "a note", "agent-07"), repo, Clock(LATER))
    await run(repo, erasure("c1"), now=LATER)
    assert [e.summary for e in repo.timeline] == [None] * len(repo.timeline)
    assert [(n.text, n.by) for n in repo.notes] == [(None, "agent-07")]  # who and when stay
    with pytest.raises(commands.CustomerErasedError):
        await commands.add_note(commands.AddNote("c1", "again", "agent-07"), repo, Clock(LATER))
    # A retry of a contact made before the erasure is still recognised (its summary is gone).
    again = await commands.log_contact(visit(), repo, Clock(LATER), RULES)
    assert again.replayed
    assert again.entry.summary is None


async def test_after_an_erasure_contacts_count_but_their_summaries_are_not_taken_in() -> None:
    repo = InMemoryCustomers()
    await run(repo, registered("c1", T0), placed("c1", "o1", "10.00", T0), erasure("c1"), now=LATER)
    later = T0 + timedelta(days=2)
    await run(repo, called_in("c1", "after the erasure", later), now=later)
    done = await commands.log_contact(visit(key="k2"), repo, Clock(later), RULES)
    assert done.entry.summary is None
    assert [e.summary for e in repo.timeline if e.type == "contact.logged"] == [None, None]
    assert repo.customers["c1"].contacts == 2
