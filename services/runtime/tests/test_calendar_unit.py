"""The shared business calendar's day arithmetic (relations' due dates, tickets' SLA days):
whole working days skip weekends and holidays, count make-up days, and end at the close."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from crm_runtime.calendar import BusinessCalendar

pytestmark = pytest.mark.unit
CST = ZoneInfo("Asia/Shanghai")
CAL = BusinessCalendar(
    holidays=frozenset({date(2027, 1, 11)}), extra_working_days=frozenset({date(2027, 1, 9)})
)


def close(day: int) -> datetime:
    return datetime(2027, 1, day, 18, 0, tzinfo=CST)


def test_add_working_days_ends_at_the_close_of_the_nth_working_day() -> None:
    friday = datetime(2027, 1, 8, 10, 0, tzinfo=CST)
    assert CAL.add_working_days(friday, 1) == close(9)  # the make-up Saturday
    assert CAL.add_working_days(friday, 2) == close(12)  # Monday 11 is a holiday
    assert CAL.add_working_days(friday, 0) == close(8)
    assert CAL.add_working_days(datetime(2027, 1, 8, 19, 0, tzinfo=CST), 0) == close(9)


def test_due_on_a_day_off_moves_to_the_next_working_day() -> None:
    assert CAL.due_on(date(2027, 1, 10)) == close(12)
    assert CAL.due_on(date(2027, 1, 12)) == close(12)


def test_working_days_between_counts_the_closes_passed() -> None:
    assert CAL.working_days_between(close(8), close(8)) == 0
    assert CAL.working_days_between(close(8), close(12)) == 2
    assert CAL.working_days_between(close(12), datetime(2027, 1, 13, 9, tzinfo=CST)) == 0
