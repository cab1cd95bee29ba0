"""Consent, opt-outs, quiet hours and the daily cap decide; templates render whole or not at all."""

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from crm_notify.domain.policy import NotifyRules, Preferences, decide
from crm_notify.domain.templates import RenderError, render

pytestmark = pytest.mark.unit
SH = ZoneInfo("Asia/Shanghai")
RULES = NotifyRules()


def customer(**changes: object) -> Preferences:
    preferences = Preferences("c1", name="李雷", email="li@example.com", registered=True)
    preferences.__dict__.update(changes)
    return preferences


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 23, hour, minute, tzinfo=SH)


def test_transactional_needs_no_opt_in_but_a_refusal_is_respected() -> None:
    assert decide(customer(), "transactional", at(12), 0, RULES).action == "send"
    refused = customer(consents={"email": {"transactional": False}})
    decision = decide(refused, "transactional", at(12), 0, RULES)
    assert (decision.action, decision.reason) == ("suppress", "email:no_consent, sms:no_address")


def test_sms_is_used_when_email_is_not_possible() -> None:
    decision = decide(
        customer(email=None, phone="+8613800138000"), "transactional", at(12), 0, RULES
    )
    assert (decision.action, decision.channel) == ("send", "sms")


def test_marketing_needs_an_explicit_opt_in() -> None:
    assert decide(customer(), "marketing", at(12), 0, RULES).action == "suppress"
    opted_in = customer(consents={"email": {"marketing": True}})
    assert decide(opted_in, "marketing", at(12), 0, RULES).action == "send"
    out = customer(consents={"email": {"marketing": True}}, opted_out=["email"])
    assert decide(out, "marketing", at(12), 0, RULES).reason == "email:opted_out, sms:no_consent"


@pytest.mark.parametrize(
    ("now", "send_at"),
    [
        (at(23), datetime(2026, 11, 24, 9, 0, tzinfo=SH)),
        (at(21), datetime(2026, 11, 24, 9, 0, tzinfo=SH)),
        (at(8, 59), at(9)),
        (at(0, 30), at(9)),
    ],
)
def test_marketing_in_quiet_hours_is_deferred_to_nine(now: datetime, send_at: datetime) -> None:
    opted_in = customer(consents={"email": {"marketing": True}})
    decision = decide(opted_in, "marketing", now, 0, RULES)
    assert (decision.action, decision.send_at) == ("defer", send_at)


def test_quiet_hours_end_at_nine_and_start_at_nine_pm_in_the_customer_s_zone() -> None:
    opted_in = customer(consents={"email": {"marketing": True}})
    assert decide(opted_in, "marketing", at(9), 0, RULES).action == "send"
    assert decide(opted_in, "marketing", at(20, 59), 0, RULES).action == "send"
    berlin = customer(consents={"email": {"marketing": True}}, time_zone="Europe/Berlin")
    assert decide(berlin, "marketing", at(12), 0, RULES).action == "defer"  # 05:00 in Berlin
    assert decide(customer(), "transactional", at(23), 0, RULES).action == "send"


def test_the_daily_cap_suppresses_marketing_only() -> None:
    opted_in = customer(consents={"email": {"marketing": True}})
    assert decide(opted_in, "marketing", at(12), 2, RULES).action == "send"
    assert decide(opted_in, "marketing", at(12), 3, RULES).reason == "daily_cap"
    assert decide(opted_in, "transactional", at(12), 30, RULES).action == "send"


def test_a_customer_never_heard_of_is_awaited_and_an_erased_one_gets_nothing() -> None:
    awaited = decide(None, "transactional", at(12), 0, RULES)
    assert (awaited.action, awaited.reason) == ("await", "awaiting_registration")
    assert awaited.send_at == at(12, 10)  # registration_wait_s: 600
    never_stored = Preferences("c1")  # version 0: the member system has not spoken of them
    assert decide(never_stored, "marketing", at(12), 0, RULES).action == "await"
    erased = Preferences("c1", version=3)  # stored, no longer registered
    assert decide(erased, "transactional", at(12), 0, RULES).reason == "unknown_customer"
    wait_over = decide(None, "transactional", at(12), 0, RULES, may_await=False)
    assert (wait_over.action, wait_over.reason) == ("suppress", "unknown_customer")
    no_wait = NotifyRules(registration_wait_s=0)
    assert decide(None, "transactional", at(12), 0, no_wait).reason == "unknown_customer"


def test_a_template_renders_in_chinese_by_default_and_in_english_on_request() -> None:
    zh = render("ticket_ack", "zh-CN", {"name": "李雷", "ticket_id": "T-1"})
    assert zh.subject == "我们已收到您的反馈（工单 T-1）"
    assert "李雷" in zh.body
    en = render("ticket_ack", "en", {"name": "Li Lei", "ticket_id": "T-1"})
    assert en.subject == "We received your complaint (ticket T-1)"


def test_a_missing_variable_is_an_error_not_a_half_filled_message() -> None:
    with pytest.raises(RenderError, match="ticket_id"):
        render("ticket_ack", "zh-CN", {"name": "李雷"})
    with pytest.raises(RenderError, match="no template"):
        render("nope", "zh-CN", {})


def test_quiet_hours_may_be_configured_within_a_day() -> None:
    rules = NotifyRules(quiet_start=time(12), quiet_end=time(14))
    assert rules.is_quiet(time(13))
    assert not rules.is_quiet(time(14))
