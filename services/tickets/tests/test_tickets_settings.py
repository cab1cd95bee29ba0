"""The ticket rules are `TicketRules`, declared once and nested in the settings: each one is set
from the environment as `CRM_TICKETS_RULES__<NAME>`, the calendar's as
`CRM_TICKETS_RULES__CALENDAR__<NAME>` (maps and lists as JSON)."""

from datetime import date, time

import pytest

from crm_tickets.domain.calendar import BusinessCalendar
from crm_tickets.domain.rules import TicketRules
from crm_tickets.settings import TicketsSettings

pytestmark = pytest.mark.unit


def test_the_defaults_are_the_domains() -> None:
    assert TicketsSettings().rules == TicketRules()


def test_a_rule_is_set_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TICKETS_RULES__AUTO_CLOSE_DAYS", "14")
    monkeypatch.setenv("CRM_TICKETS_RULES__TARGETS", '{"P1": [60, 600], "P4": [1, 2]}')
    monkeypatch.setenv("CRM_TICKETS_RULES__VIP_GRADES", '["vip", "gold"]')
    monkeypatch.setenv("CRM_TICKETS_RULES__QUEUES", '{"other": "triage"}')
    monkeypatch.setenv("CRM_TICKETS_RULES__CALENDAR__OPENS", "00:00")
    monkeypatch.setenv("CRM_TICKETS_RULES__CALENDAR__CLOSES", "00:00")
    monkeypatch.setenv("CRM_TICKETS_RULES__CALENDAR__WORKING_WEEKDAYS", "[0, 1, 2, 3, 4, 5, 6]")
    monkeypatch.setenv("CRM_TICKETS_RULES__CALENDAR__HOLIDAYS", '["2026-10-01", "2026-10-02"]')
    monkeypatch.setenv("CRM_TICKETS_SLA_INTERVAL_S", "5")
    settings = TicketsSettings()
    rules = settings.rules
    assert rules.auto_close_days == 14
    assert rules.targets == {"P1": (60, 600), "P4": (1, 2)}
    assert rules.vip_grades == frozenset({"vip", "gold"})
    assert rules.queue("billing") == "triage"
    assert rules.calendar == BusinessCalendar(
        opens=time(0),
        closes=time(0),
        working_weekdays=frozenset(range(7)),
        holidays=frozenset({date(2026, 10, 1), date(2026, 10, 2)}),
    )
    assert rules.reopen_days == TicketRules().reopen_days
    assert settings.sla_interval_s == 5


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_COMMENTS", "301", "max_comments must be less than or equal to 300"),
        ("MAX_HISTORY", "9", "max_history must be greater than or equal to 10"),
        ("WARNING_SHARE", "1", "warning_share must be less than 1"),
        ("TARGETS", '{"P9": [1, 2]}', "P1"),
        ("CALENDAR__TIME_ZONE", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("CALENDAR__CLOSES", "08:00", "must close after it opens"),
    ],
)
def test_a_rule_out_of_bounds_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"CRM_TICKETS_RULES__{name}", value)
    with pytest.raises(ValueError, match=message):
        TicketsSettings()
