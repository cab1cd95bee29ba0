"""The archive's rules are `ArchiveRules`, declared once and nested in the settings: each one is
set from the environment as `CRM_ARCHIVE_RULES__<NAME>` (or all as JSON in `CRM_ARCHIVE_RULES`)."""

from decimal import Decimal

import pytest

from crm_archive.domain.rules import ArchiveRules
from crm_archive.settings import ArchiveSettings

pytestmark = pytest.mark.unit


def test_the_defaults_are_the_domains() -> None:
    assert ArchiveSettings().rules == ArchiveRules()


def test_a_rule_is_set_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_ARCHIVE_RULES__VIP_SPEND", "5000")
    monkeypatch.setenv("CRM_ARCHIVE_RULES__RECENCY_DAYS", "[10, 20, 30, 40]")
    monkeypatch.setenv("CRM_ARCHIVE_RULES__MONETARY_SPEND", '["1", "2", "3.5", "4"]')
    monkeypatch.setenv("CRM_ARCHIVE_RULES__MIN_ORDERS_FOR_INTERVAL", "4")
    monkeypatch.setenv("CRM_ARCHIVE_RULES__BASE_CURRENCY", "EUR")
    monkeypatch.setenv("CRM_ARCHIVE_REVIEW_INTERVAL_S", "5")
    settings = ArchiveSettings()
    assert settings.rules.vip_spend == Decimal(5000)
    assert settings.rules.recency_days == (10, 20, 30, 40)
    assert settings.rules.monetary_spend == (Decimal(1), Decimal(2), Decimal("3.5"), Decimal(4))
    assert settings.rules.min_orders_for_interval == 4
    assert settings.rules.base_currency == "EUR"
    assert settings.rules.churned_days == ArchiveRules().churned_days
    assert settings.review_interval_s == 5


def test_rules_as_one_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_ARCHIVE_RULES", '{"vip_spend": "7000", "orders_kept": 50}')
    monkeypatch.setenv("CRM_ARCHIVE_RULES__LOW_CSAT", "3")
    rules = ArchiveSettings().rules
    assert (rules.vip_spend, rules.orders_kept, rules.low_csat) == (Decimal(7000), 50, 3)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ORDERS_KEPT", "20001", "orders_kept must be less than or equal to 20000"),
        ("SURVEYS_KEPT", "0", "surveys_kept must be greater than or equal to 1"),
        ("VIP_RFM_TOTAL", "16", "vip_rfm_total must be less than or equal to 15"),
        ("BASE_CURRENCY", "cny", "base_currency must match pattern"),
    ],
)
def test_a_rule_out_of_bounds_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"CRM_ARCHIVE_RULES__{name}", value)
    with pytest.raises(ValueError, match=message):
        ArchiveSettings()


def test_the_domain_refuses_what_makes_no_sense_without_pydantic() -> None:
    with pytest.raises(ValueError, match="churned_days must be greater than or equal to 1"):
        ArchiveRules(churned_days=0)
