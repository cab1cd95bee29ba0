"""Agreement customers (协议客户): terms per period, fulfilment from orders, periods closed,
renewals due.

Periods are calendar months or quarters in the business calendar's time zone, clipped to the
agreement's dates. An order counts in the period its placement falls in; a refund or a
cancellation takes it back from that same period (net figures), whenever it arrives. The
agreement holds one aggregate per period (`PeriodFigures`), never the orders: each order's own
line (`OrderLine`, kept beside it) is what makes refunds, cancellations and redeliveries exact.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

Period = Literal["month", "quarter"]
Measure = Literal["spend", "orders"]
AgreementStatus = Literal["active", "terminated", "ended"]
STATUSES: tuple[AgreementStatus, ...] = ("active", "terminated", "ended")
CLOSED_PERIODS_KEPT = 24


class AgreementError(ValueError):
    """Terms or dates that do not make an agreement."""


class NoAgreementError(LookupError):
    pass


@dataclass(frozen=True)
class Terms:
    period: Period
    measure: Measure
    minimum: Decimal
    """Per period: an amount in `currency` (spend) or an order count (orders)."""
    currency: str
    renewal_notice_days: int
    first_response_hours: int | None = None
    """Complaints of this customer: first response within this many business hours."""
    price_note: str | None = None
    """The agreed discount or price, as written (sealed at rest, never published)."""


@dataclass
class PeriodFigures:
    start: date
    end: date
    """The period's last day (inclusive)."""
    spend: Decimal = Decimal(0)
    orders: int = 0
    at_risk_notified: bool = False
    closed: bool = False
    met: bool | None = None


@dataclass
class OrderLine:
    """One order as one agreement counted it: enough to take it back exactly."""

    agreement_id: str
    order_id: str
    customer_id: str
    period_start: date
    amount: Decimal
    currency: str
    refunded: Decimal = Decimal(0)
    cancelled: bool = False

    @property
    def counts(self) -> bool:
        return not self.cancelled and self.refunded < self.amount

    @property
    def net(self) -> Decimal:
        return Decimal(0) if self.cancelled else self.amount - self.refunded


@dataclass(frozen=True)
class AtRisk:
    agreement: "Agreement"
    period: PeriodFigures
    fulfilled: Decimal
    projected: Decimal
    share_left: float
    at: datetime


@dataclass(frozen=True)
class PeriodClosed:
    agreement: "Agreement"
    period: PeriodFigures
    fulfilled: Decimal
    at: datetime


@dataclass(frozen=True)
class RenewalDue:
    agreement: "Agreement"
    ends_on: date
    at: datetime


Review = AtRisk | PeriodClosed | RenewalDue


def period_bounds(day: date, period: Period) -> tuple[date, date]:
    """The calendar month or quarter holding `day`: its first and last day."""
    first_month = day.month if period == "month" else 3 * ((day.month - 1) // 3) + 1
    start = date(day.year, first_month, 1)
    months = 1 if period == "month" else 3
    index = first_month - 1 + months
    after = date(day.year + index // 12, index % 12 + 1, 1)
    return start, after - timedelta(days=1)


@dataclass
class Agreement:
    agreement_id: str
    customer_id: str
    number: str
    owner: str | None
    starts_on: date
    ends_on: date
    terms: Terms
    created_at: datetime
    created_by: str
    status: AgreementStatus = "active"
    periods: list[PeriodFigures] = field(default_factory=list)
    closed_through: date | None = None
    """The last day of the last closed period: periods before it are never walked again."""
    renewal_notice_for: date | None = None
    """The end date whose renewal notice was given (renewing moves the end: a new notice)."""
    terminated_on: date | None = None
    version: int = 0

    def __post_init__(self) -> None:
        check_dates(self.starts_on, self.ends_on)
        check_terms(self.terms)

    # -- periods --------------------------------------------------------------------------
    def covers(self, day: date) -> bool:
        return self.status == "active" and self.starts_on <= day <= self.ends_on

    def peek(self, day: date) -> PeriodFigures:
        """The figures of the period holding `day` (empty ones, not kept, if it has none)."""
        start, end = period_bounds(day, self.terms.period)
        start, end = max(start, self.starts_on), min(end, self.ends_on)
        return next((p for p in self.periods if p.start == start), PeriodFigures(start, end))

    def figures(self, day: date) -> PeriodFigures:
        """The figures of the period holding `day` (made empty and kept when first needed)."""
        figures = self.peek(day)
        if not any(p is figures for p in self.periods):
            self.periods.append(figures)
            self.periods.sort(key=lambda p: p.start)
        return figures

    def fulfilled(self, figures: PeriodFigures) -> Decimal:
        return figures.spend if self.terms.measure == "spend" else Decimal(figures.orders)

    # -- orders -------------------------------------------------------------------------------
    def place(self, line: OrderLine) -> None:
        figures = self.figures(line.period_start)
        if line.currency == self.terms.currency:
            figures.spend += line.amount
        figures.orders += 1

    def refund(self, line: OrderLine, amount: Decimal) -> None:
        """Take `amount` back (never more than is left of the order)."""
        if line.cancelled:
            return
        taken = min(amount, line.amount - line.refunded)
        counted = line.counts
        line.refunded += taken
        figures = self.figures(line.period_start)
        if line.currency == self.terms.currency:
            figures.spend -= taken
        if counted and not line.counts:
            figures.orders -= 1

    def cancel(self, line: OrderLine) -> None:
        if line.cancelled:
            return
        figures = self.figures(line.period_start)
        if line.currency == self.terms.currency:
            figures.spend -= line.net
        if line.counts:
            figures.orders -= 1
        line.cancelled = True

    # -- the sweep ------------------------------------------------------------------------
    def review(self, now: datetime, zone: ZoneInfo, at_risk_share_left: float) -> list[Review]:
        """Close ended periods (met or missed), judge the current one's projection, give the
        renewal notice, end the agreement after its last day. Each at most once."""
        if self.status != "active":
            return []
        found: list[Review] = []
        today = now.astimezone(zone).date()
        day = (
            self.starts_on
            if self.closed_through is None
            else self.closed_through + timedelta(days=1)
        )
        while day <= min(today, self.ends_on):
            figures = self.figures(day)
            if _midnight_after(figures.end, zone) <= now:
                if not figures.closed:
                    figures.closed = True
                    figures.met = self.fulfilled(figures) >= self.terms.minimum
                    found.append(PeriodClosed(self, figures, self.fulfilled(figures), now))
                self.closed_through = figures.end
            else:
                found.extend(self._judge(figures, now, zone, at_risk_share_left))
            day = figures.end + timedelta(days=1)
        notice_on = self.ends_on - timedelta(days=self.terms.renewal_notice_days)
        if today >= notice_on and self.renewal_notice_for != self.ends_on and today <= self.ends_on:
            self.renewal_notice_for = self.ends_on
            found.append(RenewalDue(self, self.ends_on, now))
        if _midnight_after(self.ends_on, zone) <= now:
            self.status = "ended"
        self._prune()
        return found

    def projection(
        self, figures: PeriodFigures, now: datetime, zone: ZoneInfo
    ) -> tuple[Decimal, Decimal, float]:
        """(fulfilled, projected at the period's end, share of the period left)."""
        start = datetime.combine(figures.start, time(0), tzinfo=zone)
        end = _midnight_after(figures.end, zone)
        elapsed = min(max((now - start) / (end - start), 0.0), 1.0)
        fulfilled = self.fulfilled(figures)
        projected = fulfilled if elapsed >= 1 else fulfilled / Decimal(str(max(elapsed, 1e-9)))
        if elapsed == 0:
            projected = Decimal(0)
        return fulfilled, projected.quantize(Decimal("0.01")), round(1.0 - elapsed, 4)

    def _judge(
        self, figures: PeriodFigures, now: datetime, zone: ZoneInfo, share: float
    ) -> list[Review]:
        if figures.at_risk_notified:
            return []
        fulfilled, projected, left = self.projection(figures, now, zone)
        if left > share or projected >= self.terms.minimum:
            return []
        figures.at_risk_notified = True
        return [AtRisk(self, figures, fulfilled, projected, left, now)]

    def _prune(self) -> None:
        closed = [p for p in self.periods if p.closed]
        for old in closed[:-CLOSED_PERIODS_KEPT]:
            self.periods.remove(old)

    # -- staff actions --------------------------------------------------------------------
    def amend(self, owner: str | None, ends_on: date, terms: Terms) -> None:
        self._require_active()
        check_dates(self.starts_on, ends_on)
        check_terms(terms)
        if terms.period != self.terms.period and any(p.spend or p.orders for p in self.periods):
            raise AgreementError("the period of an agreement with figures cannot change")
        self.owner, self.ends_on, self.terms = owner, ends_on, terms
        for figures in self.periods:
            if not figures.closed:
                figures.end = min(period_bounds(figures.start, terms.period)[1], ends_on)

    def terminate(self, on: date) -> None:
        self._require_active()
        if on < self.starts_on:
            raise AgreementError("an agreement cannot end before it starts")
        self.status, self.terminated_on = "terminated", on
        self.ends_on = min(self.ends_on, on)

    def renew(self, ends_on: date) -> date:
        """Extend to `ends_on`; the previous end."""
        if self.status == "terminated":
            raise AgreementError("a terminated agreement cannot be renewed: create a new one")
        if ends_on <= self.ends_on:
            raise AgreementError(f"a renewal must end after {self.ends_on.isoformat()}")
        previous, self.ends_on, self.status = self.ends_on, ends_on, "active"
        for figures in self.periods:
            if not figures.closed:
                figures.end = min(period_bounds(figures.start, self.terms.period)[1], ends_on)
        return previous

    def _require_active(self) -> None:
        if self.status != "active":
            raise AgreementError(f"agreement {self.agreement_id} is {self.status}")


def _midnight_after(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)


def check_dates(starts_on: date, ends_on: date) -> None:
    if ends_on < starts_on:
        raise AgreementError("an agreement must end on or after its start")


def check_terms(terms: Terms) -> None:
    if terms.minimum < 0:
        raise AgreementError("the minimum must be 0 or more")
    if terms.measure == "orders" and terms.minimum != terms.minimum.to_integral_value():
        raise AgreementError("a minimum order count must be a whole number")
    if terms.renewal_notice_days < 0:
        raise AgreementError("the renewal notice must be 0 days or more")
