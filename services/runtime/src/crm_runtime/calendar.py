"""A business calendar: working hours in a time zone, holidays, and make-up working days (调休).

Pure code (stdlib only), shared by the services that count business time (tickets' SLA clocks,
relations' due dates), so the two agree on what a business day is. `working_seconds(a, b)` counts
the business seconds between two instants; `add_working(a, s)` is the instant at which `s`
business seconds have passed since `a`; `add_working_days(a, n)` is the close of the `n`-th
working day after `a`'s day; `working_days_between(a, b)` counts the working days ended in
between.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_DAYS = 3660  # ten years: a bound for searches, never reached by a sane target


@dataclass(frozen=True)
class BusinessCalendar:
    time_zone: str = "Asia/Shanghai"
    opens: time = time(9, 0)
    closes: time = time(18, 0)  # time(0): midnight, the end of the day
    working_weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    holidays: frozenset[date] = field(default_factory=frozenset)
    extra_working_days: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.time_zone!r}") from exc
        if self.closes <= self.opens and self.closes != time(0):
            raise ValueError("the working day must close after it opens (00:00 = midnight)")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def is_working_day(self, day: date) -> bool:
        if day in self.extra_working_days:
            return True
        return day.weekday() in self.working_weekdays and day not in self.holidays

    def _window(self, day: date) -> tuple[datetime, datetime]:
        zone = self.zone
        closes = (
            datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
            if self.closes == time(0)
            else datetime.combine(day, self.closes, tzinfo=zone)
        )
        return datetime.combine(day, self.opens, tzinfo=zone), closes

    def working_seconds(self, start: datetime, end: datetime) -> int:
        """Business seconds in [start, end) (0 when end <= start), whole seconds, rounded down."""
        if end <= start:
            return 0
        total = 0.0
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        while day <= last:
            if self.is_working_day(day):
                opens, closes = self._window(day)
                a, b = max(start, opens), min(end, closes)
                if b > a:
                    total += (b - a).total_seconds()
            day += timedelta(days=1)
        return int(total)

    def add_working(self, start: datetime, seconds: int) -> datetime:
        """The earliest instant by which `seconds` business seconds have passed since `start`."""
        if seconds <= 0:
            return start
        remaining = float(seconds)
        day = start.astimezone(self.zone).date()
        for _ in range(MAX_DAYS):
            if self.is_working_day(day):
                opens, closes = self._window(day)
                a = max(start, opens)
                if closes > a:
                    available = (closes - a).total_seconds()
                    if available >= remaining:
                        return a + timedelta(seconds=remaining)
                    remaining -= available
            day += timedelta(days=1)
        raise ValueError("no working time in ten years: check the calendar")

    def local_date(self, moment: datetime) -> date:
        """The calendar day of `moment` in the calendar's time zone."""
        return moment.astimezone(self.zone).date()

    def end_of_day(self, day: date) -> datetime:
        """The close of business of `day` (whether or not it is a working day)."""
        return self._window(day)[1]

    def next_working_day(self, day: date) -> date:
        """`day` if it is a working day, else the first working day after it."""
        for _ in range(MAX_DAYS):
            if self.is_working_day(day):
                return day
            day += timedelta(days=1)
        raise ValueError("no working day in ten years: check the calendar")

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The close of business of the `days`-th working day after `start`'s local day (0: the
        close of `start`'s day if it is a working day and still open, else of the next one)."""
        day = self.local_date(start)
        if days <= 0:
            day = self.next_working_day(day)
            if self.end_of_day(day) <= start:
                day = self.next_working_day(day + timedelta(days=1))
            return self.end_of_day(day)
        for _ in range(days):
            day = self.next_working_day(day + timedelta(days=1))
        return self.end_of_day(day)

    def due_on(self, day: date) -> datetime:
        """The close of business of `day`, or of the first working day after it."""
        return self.end_of_day(self.next_working_day(day))

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """Working days whose close of business falls in (start, end]: how many business days
        late something due at `start` is at `end` (0 when end <= start)."""
        if end <= start:
            return 0
        count = 0
        day = self.local_date(start)
        last = self.local_date(end)
        while day <= last:
            if self.is_working_day(day) and start < self.end_of_day(day) <= end:
                count += 1
            day += timedelta(days=1)
        return count
