"""The HTTP command, run on the in-memory fakes: staff change a customer's locale, time zone and
opt-outs; what they leave out stays; the next message follows the change; a change made over a
stale version (a member event came between the read and the write) is refused, not saved over
the newer preferences; an opt-out cancels what waits on the channel."""

import copy
from typing import Any

import pytest
from notify_fakes import InMemoryNotify
from test_notify_flow import ev, opened, registered, run

from crm_contracts import CloudEvent
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.members.v1 import Consent
from crm_notify import commands
from crm_notify.ports import Changes
from crm_runtime.errors import ConcurrencyConflictError

pytestmark = pytest.mark.unit


async def known_customer(customer: str, *, marketing: bool = False) -> InMemoryNotify:
    repo = InMemoryNotify()
    await run(repo, registered(customer, consents={"email": Consent(marketing=marketing)}))
    return repo


def consent(customer: str, *, granted: bool) -> CloudEvent[Any]:
    data = members_v1.CustomerConsentChanged(channel="email", purpose="marketing", granted=granted)
    return ev(members_v1.CUSTOMER_CONSENT_CHANGED, customer, data)


async def test_an_update_changes_what_it_names_and_keeps_the_rest() -> None:
    repo = await known_customer("c1")
    version = repo.prefs["c1"].version
    command = commands.UpdatePreferences(
        "c1", version, locale="en", opted_out=["sms", "email", "sms"]
    )
    updated = await commands.update_preferences(command, repo)
    assert updated.version == version + 1
    assert (updated.locale, updated.opted_out) == ("en", ["email", "sms"])
    stored = repo.prefs["c1"]
    assert (stored.locale, stored.time_zone, stored.opted_out) == (
        "en",
        "Asia/Shanghai",
        ["email", "sms"],
    )
    assert stored.email == "c1@example.com"  # untouched
    await commands.update_preferences(
        commands.UpdatePreferences("c1", updated.version, time_zone="Europe/Berlin"), repo
    )
    assert (repo.prefs["c1"].time_zone, repo.prefs["c1"].locale) == ("Europe/Berlin", "en")


async def test_the_next_message_follows_the_update() -> None:
    repo = await known_customer("c1")
    update = commands.UpdatePreferences("c1", repo.prefs["c1"].version, opted_out=["email"])
    await commands.update_preferences(update, repo)
    await run(repo, opened("c1"))
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.history[-1].reason) == ("suppressed", "email:opted_out, sms:no_address")


async def test_an_unknown_customer_or_time_zone_is_refused_and_nothing_is_saved() -> None:
    repo = await known_customer("c1")
    before = copy.deepcopy(repo.prefs["c1"])
    with pytest.raises(commands.NoPreferencesError):
        await commands.update_preferences(
            commands.UpdatePreferences("nobody", 1, locale="en"), repo
        )
    with pytest.raises(commands.UnknownTimeZoneError):
        await commands.update_preferences(
            commands.UpdatePreferences("c1", before.version, locale="en", time_zone="Mars/Olympus"),
            repo,
        )
    assert repo.prefs == {"c1": before}  # the refused time zone was not saved, nor the locale
    assert (before.locale, before.time_zone) == ("zh-CN", "Asia/Shanghai")


async def test_a_put_over_a_stale_version_loses_to_the_member_event_that_came_between() -> None:
    """Two writers: staff read the preferences (version v), then the member system's consent
    withdrawal is applied by the consumer (v + 1), then staff save their read copy's change.
    Before versions, the PUT replaced the whole record and silently gave the consent back."""
    repo = await known_customer("c1", marketing=True)
    read = repo.prefs["c1"].version
    await run(repo, consent("c1", granted=False))  # the consumer's write: a new version
    stale = commands.UpdatePreferences("c1", read, locale="en")
    with pytest.raises(commands.StalePreferencesError) as refused:
        await commands.update_preferences(stale, repo)
    assert refused.value.current == read + 1
    stored = repo.prefs["c1"]
    assert (stored.locale, stored.consents["email"]["marketing"]) == ("zh-CN", False)
    fresh = commands.UpdatePreferences("c1", stored.version, locale="en")  # read again: saved
    assert (await commands.update_preferences(fresh, repo)).locale == "en"
    assert repo.prefs["c1"].consents["email"]["marketing"] is False


async def test_the_consumer_redoes_its_write_when_staff_saved_between_its_read_and_write() -> None:
    """The other way round: the consumer's batch read version v, a PUT saved v + 1 meanwhile;
    the batch's write is refused (a transient conflict: the runtime redoes the batch on a fresh
    read), so the staff's change is not undone by the batch's older copy."""
    repo = await known_customer("c1", marketing=True)
    batch_copy = await repo.preferences(["c1"])
    update = commands.UpdatePreferences("c1", repo.prefs["c1"].version, locale="en")
    await commands.update_preferences(update, repo)
    batch_copy["c1"].consents["email"]["marketing"] = False
    with pytest.raises(ConcurrencyConflictError):
        await repo.save(Changes(preferences=batch_copy))
    await run(repo, consent("c1", granted=False))  # the redone batch, on a fresh read
    stored = repo.prefs["c1"]
    assert (stored.locale, stored.consents["email"]["marketing"]) == ("en", False)


async def test_an_opt_out_cancels_what_waits_on_that_channel_and_says_why() -> None:
    repo = await known_customer("c1", marketing=True)
    await run(repo, opened("c1"))
    update = commands.UpdatePreferences("c1", repo.prefs["c1"].version, opted_out=["email"])
    await commands.update_preferences(update, repo)
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.history[-1].reason) == ("cancelled", "email:opted_out")
    cancelled = [m.event.data for m in repo.outbox if m.event.type == "notification.cancelled"]
    assert {(c.template, c.reason) for c in cancelled} == {
        ("welcome", "email:opted_out"),
        ("ticket_ack", "email:opted_out"),
    }


async def test_points_and_tickets_do_not_make_a_staff_members_etag_stale() -> None:
    """Only the member system's events change preferences: a batch of points or a ticket for
    the customer writes none, so staff who read them meanwhile still save (no 412 for nothing)."""
    repo = await known_customer("c1")
    read = repo.prefs["c1"].version
    earned = loyalty_v1.PointsEarned(points=10, order_id="o1", balance=10)
    await run(repo, ev(loyalty_v1.POINTS_EARNED, "c1", earned), opened("c1"))
    assert repo.prefs["c1"].version == read
    saved = await commands.update_preferences(commands.UpdatePreferences("c1", read, "en"), repo)
    assert saved.version == read + 1
