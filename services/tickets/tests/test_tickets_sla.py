"""SLA clocks run in business hours only: evenings, weekends and holidays do not count, waiting
for the customer pauses them, and the elapsed time never goes backwards."""

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_tickets.domain.calendar import BusinessCalendar
from crm_tickets.domain.rules import TicketRules
from crm_tickets.domain.ticket import RUNNING, Ticket

pytestmark = pytest.mark.unit
SH = ZoneInfo("Asia/Shanghai")
NATIONAL_DAY = frozenset(date(2026, 10, d) for d in range(1, 8))
CALENDAR = BusinessCalendar(
    holidays=NATIONAL_DAY, extra_working_days=frozenset({date(2026, 10, 10)})
)
RULES = TicketRules(calendar=CALENDAR)


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def test_an_evening_counts_nothing_and_the_next_morning_counts() -> None:
    # Thursday 2026-11-19 17:30 to Friday 09:30: 30 min + 30 min.
    assert CALENDAR.working_seconds(sh(2026, 11, 19, 17, 30), sh(2026, 11, 20, 9, 30)) == 3600


def test_a_weekend_counts_nothing() -> None:
    # Friday 17:00 to Monday 10:00: 1 h on Friday, 1 h on Monday.
    assert CALENDAR.working_seconds(sh(2026, 11, 20, 17), sh(2026, 11, 23, 10)) == 7200
    assert CALENDAR.working_seconds(sh(2026, 11, 21, 9), sh(2026, 11, 22, 18)) == 0


def test_holidays_count_nothing_and_a_make_up_saturday_counts() -> None:
    assert CALENDAR.working_seconds(sh(2026, 9, 30, 17), sh(2026, 10, 8, 10)) == 7200
    assert CALENDAR.working_seconds(sh(2026, 10, 10, 9), sh(2026, 10, 10, 18)) == 9 * 3600


def test_instants_in_other_zones_are_compared_in_the_calendar_zone() -> None:
    # 01:00 UTC = 09:00 in Shanghai.
    start = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    assert CALENDAR.working_seconds(start, start + timedelta(hours=1)) == 3600


def test_a_due_time_skips_the_night_and_the_weekend() -> None:
    assert CALENDAR.add_working(sh(2026, 11, 20, 17, 30), 3600) == sh(2026, 11, 23, 9, 30)
    assert CALENDAR.add_working(sh(2026, 11, 22, 12), 60) == sh(2026, 11, 23, 9, 1)
    assert CALENDAR.add_working(sh(2026, 11, 23, 10), 0) == sh(2026, 11, 23, 10)


def test_a_24_hour_calendar_counts_everything() -> None:
    always = BusinessCalendar(opens=time(0), closes=time(0), working_weekdays=frozenset(range(7)))
    start = sh(2026, 11, 21, 23)
    assert always.working_seconds(start, start + timedelta(hours=5)) == 5 * 3600
    assert always.add_working(start, 7200) == start + timedelta(hours=2)


def opened(at: datetime, severity: str = "high", grade: str | None = None) -> Ticket:
    ticket, _ = Ticket.open(
        "T-1",
        "c1",
        at,
        channel="phone",
        category="delivery",
        severity=severity,
        grade=grade,
        rules=RULES,
        actor="agent-1",
    )
    return ticket


def test_waiting_for_the_customer_pauses_the_resolution_clock() -> None:
    ticket = opened(sh(2026, 11, 23, 9))
    ticket.assign("a1", "sup", sh(2026, 11, 23, 9), manual=True)
    ticket.change_status("in_progress", "a1", sh(2026, 11, 23, 10))
    ticket.change_status("waiting_customer", "a1", sh(2026, 11, 23, 11))
    ticket.change_status("in_progress", "a1", sh(2026, 11, 23, 15))
    # 09-11 running, 11-15 paused, 15-16 running.
    assert ticket.elapsed("resolution", sh(2026, 11, 23, 16), RULES) == 3 * 3600
    # The first response happened at 11:00 (asking the customer): its clock stopped there.
    assert ticket.elapsed("first_response", sh(2026, 11, 23, 16), RULES) == 2 * 3600


def test_warning_at_80_percent_then_breach_and_escalation_once() -> None:
    ticket = opened(sh(2026, 11, 23, 9), severity="critical")  # P1: first response in 30 min
    assert ticket.priority == "P1"
    assert ticket.review(sh(2026, 11, 23, 9, 23), RULES) == []
    warned = ticket.review(sh(2026, 11, 23, 9, 24), RULES)
    assert [type(e).__name__ for e in warned] == ["SlaWarning"]
    breached = ticket.review(sh(2026, 11, 23, 9, 30), RULES)
    assert [type(e).__name__ for e in breached] == ["SlaBreached", "Escalated"]
    assert ticket.queue == "supervisors"
    assert ticket.review(sh(2026, 11, 23, 9, 45), RULES) == []


def test_the_next_check_is_the_next_warning_or_breach_in_business_time() -> None:
    ticket = opened(sh(2026, 11, 20, 17, 50), severity="critical")  # Friday evening, P1
    # 24 min to the warning: 10 min on Friday, 14 on Monday morning.
    assert ticket.next_check_at(sh(2026, 11, 20, 17, 50), RULES) == sh(2026, 11, 23, 9, 14)


def test_the_report_figures_are_the_domain_s_and_stay_once_their_clocks_stop() -> None:
    ticket = opened(sh(2026, 11, 23, 9))  # P2: first response 2 h, resolution 9 h
    ticket.assign("a1", "sup", sh(2026, 11, 23, 9), manual=True)
    assert ticket.figures(sh(2026, 11, 23, 9), RULES).next_check_at == sh(2026, 11, 23, 10, 36)
    ticket.comment("m1", "a1", "在查", sh(2026, 11, 23, 10), public=True)
    ticket.resolve(["carrier"], "a1", sh(2026, 11, 23, 17))
    later = [sh(2026, 11, 23, 17), sh(2026, 11, 24, 12), sh(2026, 11, 27, 9)]
    figures = [ticket.figures(now, RULES) for now in later]
    assert {(f.first_response_s, f.resolution_s) for f in figures} == {(3600, 8 * 3600)}
    # The sweep looks again when the auto-close is due.
    assert figures[0].next_check_at == sh(2026, 11, 30, 17)


def test_a_vip_ticket_is_one_priority_higher() -> None:
    assert opened(sh(2026, 11, 23, 9), severity="high").priority == "P2"
    assert opened(sh(2026, 11, 23, 9), severity="high", grade="vip").priority == "P1"
    assert opened(sh(2026, 11, 23, 9), severity="critical", grade="vip").priority == "P1"
    assert opened(sh(2026, 11, 23, 9), severity="low", grade="ordinary").priority == "P4"


statuses = st.lists(
    st.tuples(st.integers(0, 3 * 24 * 60), st.sampled_from(["in_progress", "waiting_customer"])),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(statuses, st.lists(st.integers(0, 10 * 24 * 60), min_size=2, max_size=6))
def test_elapsed_never_decreases_and_is_the_sum_of_open_working_intervals(
    changes: list[tuple[int, str]], probes: list[int]
) -> None:
    start = PROPERTY_START  # a week with the National Day holidays and a make-up Saturday
    ticket = opened(start)
    ticket.assign("a1", "sup", start, manual=True)
    ticket.change_status("in_progress", "a1", start)
    at = start
    for minutes, status in changes:
        at += timedelta(minutes=minutes)
        if status != ticket.status:
            ticket.change_status(
                "in_progress" if status == "in_progress" else "waiting_customer", "a1", at
            )
    previous = -1
    for minutes in sorted(probes):
        now = start + timedelta(minutes=minutes)
        elapsed = ticket.elapsed("resolution", now, RULES)
        assert elapsed >= previous
        previous = elapsed
        # Independently: count working minutes one by one (no calendar code involved).
        expected = 0
        log = [*ticket.status_log, (now, "resolved")]
        for (a, status), (b, _) in itertools.pairwise(log):
            if status in RUNNING and min(b, now) > a:
                expected += 60 * (
                    WORKING_MINUTES[minute_of(min(b, now))] - WORKING_MINUTES[minute_of(a)]
                )
        assert elapsed == expected


@settings(max_examples=100, deadline=None)
@given(statuses, st.booleans(), st.integers(0, 10 * 24 * 60))
def test_the_figures_equal_the_clocks_read_at_any_later_time(
    changes: list[tuple[int, str]], resolve: bool, later: int
) -> None:
    """What the store used to compute at save time (`elapsed(target, now)` once the clock
    stopped) is what `Ticket.figures` gives, whenever it is asked."""
    at = PROPERTY_START
    ticket = opened(at)
    ticket.assign("a1", "sup", at, manual=True)
    ticket.change_status("in_progress", "a1", at)
    for minutes, status in changes:
        at += timedelta(minutes=minutes)
        if status != ticket.status:  # asking the customer is the first response
            ticket.change_status(
                "in_progress" if status == "in_progress" else "waiting_customer", "a1", at
            )
    if resolve:
        ticket.resolve(["x"], "a1", at)
    now = at + timedelta(minutes=later)
    figures = ticket.figures(now, RULES)
    assert figures.first_response_s == (
        ticket.elapsed("first_response", now, RULES) if ticket.first_response_at else None
    )
    assert figures.resolution_s == (
        ticket.elapsed("resolution", now, RULES) if ticket.resolved_at else None
    )


def _working_minute(at: datetime) -> bool:
    local = at.astimezone(SH)
    day = local.date()
    workday = day == date(2026, 10, 10) or (day.weekday() < 5 and day not in NATIONAL_DAY)
    return workday and 9 * 60 <= local.hour * 60 + local.minute < 18 * 60


PROPERTY_START = sh(2026, 9, 28, 8)
# WORKING_MINUTES[i] = working minutes in [start, start + i minutes).
WORKING_MINUTES = [0]
for _i in range(14 * 24 * 60):
    WORKING_MINUTES.append(
        WORKING_MINUTES[-1] + _working_minute(PROPERTY_START + timedelta(minutes=_i))
    )


def minute_of(at: datetime) -> int:
    return int((at - PROPERTY_START).total_seconds() // 60)
