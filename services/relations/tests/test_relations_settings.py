"""Relations' rules come from `CRM_RELATIONS_RULES__*`, nested and checked like the others'."""

import pytest

from crm_relations.settings import RelationsSettings

pytestmark = pytest.mark.unit


def test_rules_and_the_calendar_are_read_from_nested_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "CRM_RELATIONS_RULES__PLANS", '[{"grade": "vip", "every_days": 14, "purpose": "care"}]'
    )
    monkeypatch.setenv("CRM_RELATIONS_RULES__RECOVERY_BUSINESS_DAYS", "1")
    monkeypatch.setenv("CRM_RELATIONS_RULES__CALENDAR__HOLIDAYS", '["2027-02-11"]')
    settings = RelationsSettings()
    assert [(p.grade, p.every_days) for p in settings.rules.plans] == [("vip", 14)]
    assert settings.rules.recovery_business_days == 1
    assert len(settings.rules.calendar.holidays) == 1
    assert (settings.http_port, settings.database) == (8085, "crm_relations")


def test_a_rule_out_of_bounds_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_RELATIONS_RULES__AT_RISK_SHARE_LEFT", "1.5")
    with pytest.raises(ValueError, match="at_risk_share_left"):
        RelationsSettings()
