"""The HTTP command, run on the in-memory fakes: staff change a customer's locale, time zone and
opt-outs; what they leave out stays; the next message follows the change."""

import copy

import pytest
from notify_fakes import InMemoryNotify
from test_notify_flow import opened, registered, run

from crm_notify import commands

pytestmark = pytest.mark.unit


async def known_customer(customer: str) -> InMemoryNotify:
    repo = InMemoryNotify()
    await run(repo, registered(customer))
    return repo


async def test_an_update_changes_what_it_names_and_keeps_the_rest() -> None:
    repo = await known_customer("c1")
    command = commands.UpdatePreferences("c1", locale="en", opted_out=["sms", "email", "sms"])
    updated = await commands.update_preferences(command, repo)
    assert (updated.locale, updated.opted_out) == ("en", ["email", "sms"])
    stored = repo.prefs["c1"]
    assert (stored.locale, stored.time_zone, stored.opted_out) == (
        "en",
        "Asia/Shanghai",
        ["email", "sms"],
    )
    assert stored.email == "c1@example.com"  # untouched
    await commands.update_preferences(
        commands.UpdatePreferences("c1", time_zone="Europe/Berlin"), repo
    )
    assert (repo.prefs["c1"].time_zone, repo.prefs["c1"].locale) == ("Europe/Berlin", "en")


async def test_the_next_message_follows_the_update() -> None:
    repo = await known_customer("c1")
    await commands.update_preferences(commands.UpdatePreferences("c1", opted_out=["email"]), repo)
    await run(repo, opened("c1"))
    [ack] = repo.by_template("ticket_ack")
    assert (ack.status, ack.history[-1].reason) == ("suppressed", "email:opted_out, sms:no_address")


async def test_an_unknown_customer_or_time_zone_is_refused_and_nothing_is_saved() -> None:
    repo = await known_customer("c1")
    before = copy.deepcopy(repo.prefs["c1"])
    with pytest.raises(commands.NoPreferencesError):
        await commands.update_preferences(commands.UpdatePreferences("nobody", locale="en"), repo)
    with pytest.raises(commands.UnknownTimeZoneError):
        await commands.update_preferences(
            commands.UpdatePreferences("c1", locale="en", time_zone="Mars/Olympus"), repo
        )
    assert repo.prefs == {"c1": before}  # the refused time zone was not saved, nor the locale
    assert (before.locale, before.time_zone) == ("zh-CN", "Asia/Shanghai")
