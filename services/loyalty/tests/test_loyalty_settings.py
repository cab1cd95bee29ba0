"""The loyalty rules are `LoyaltyRules`, declared once and nested in the settings: each one is set
from the environment as `CRM_LOYALTY_RULES__<NAME>` (maps and lists as JSON)."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from crm_loyalty.domain.rules import LoyaltyRules, Promotion
from crm_loyalty.settings import LoyaltySettings

pytestmark = pytest.mark.unit
DOUBLE_11 = (
    '[{"name": "双11", "starts_at": "2026-11-11T00:00:00+08:00", '
    '"ends_at": "2026-11-12T00:00:00+08:00", "multiplier": "3", "channels": ["app"]}]'
)


def test_the_defaults_are_the_domains() -> None:
    assert LoyaltySettings().rules == LoyaltyRules()


def test_a_rule_is_set_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_LOYALTY_RULES__WELCOME_BONUS", "50")
    monkeypatch.setenv("CRM_LOYALTY_RULES__EARN_RATES", '{"CNY": "1", "USD": "7.5"}')
    monkeypatch.setenv("CRM_LOYALTY_RULES__TIER_THRESHOLDS", '{"standard": 0, "silver": 10}')
    monkeypatch.setenv("CRM_LOYALTY_RULES__PROMOTIONS", DOUBLE_11)
    monkeypatch.setenv("CRM_LOYALTY_SWEEP_INTERVAL_S", "5")
    settings = LoyaltySettings()
    rules = settings.rules
    assert rules.welcome_bonus == 50
    assert rules.earn_rates == {"CNY": Decimal(1), "USD": Decimal("7.5")}
    assert rules.tier_thresholds == {"standard": 0, "silver": 10}
    (promotion,) = rules.promotions
    assert isinstance(promotion, Promotion)
    assert promotion.starts_at == datetime(2026, 11, 10, 16, tzinfo=UTC)
    assert (promotion.multiplier, promotion.channels) == (Decimal(3), ("app",))
    assert rules.birthday_bonus == LoyaltyRules().birthday_bonus
    assert settings.sweep_interval_s == 5


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOT_LIFETIME_MONTHS", "0", "lot_lifetime_months must be greater than or equal to 1"),
        ("WELCOME_BONUS", "-1", "welcome_bonus must be greater than or equal to 0"),
        ("TIER_MULTIPLIERS", '{"platinum": "3"}', "standard"),
        ("PROMOTIONS", DOUBLE_11.replace('"3"', '"0"'), "multiplier must be greater than 0"),
        ("PROMOTIONS", DOUBLE_11.replace("双11", ""), "at least 1 character"),
    ],
)
def test_a_rule_out_of_bounds_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"CRM_LOYALTY_RULES__{name}", value)
    with pytest.raises(ValueError, match=message):
        LoyaltySettings()
