"""The archive's documented, configurable rules: RFM scores, grade, lifecycle stage, churn warning.

Every rule is a pure function of a customer's facts and `now`; the service README gives each one
with an example. Thresholds come from `ArchiveRules`, declared here once and nested in the
settings: `CRM_ARCHIVE_RULES__<NAME>` sets one (e.g. `CRM_ARCHIVE_RULES__VIP_SPEND=5000`).
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_runtime.bounds import within

Stage = Literal["potential", "new", "active", "loyal", "at_risk", "churned", "one_time"]
Grade = Literal["vip", "ordinary", "potential"]
ChurnReason = Literal["purchase_interval", "complaints", "low_csat"]


@dataclass(frozen=True)
class ArchiveRules:
    base_currency: str = "CNY"
    rfm_window_days: int = 365
    """Frequency and monetary count orders placed within this many days before now."""
    recency_days: tuple[int, int, int, int] = (30, 90, 180, 365)
    """Days since the last order: <= 30 scores 5, <= 90 scores 4, <= 180: 3, <= 365: 2, else 1."""
    frequency_orders: tuple[int, int, int, int] = (1, 2, 4, 8)
    """Orders in the window: >= 8 scores 5, >= 4: 4, >= 2: 3, >= 1: 2, else 1."""
    monetary_spend: tuple[Decimal, Decimal, Decimal, Decimal] = (
        Decimal(500),
        Decimal(2000),
        Decimal(5000),
        Decimal(20000),
    )
    """Net spend in the window: >= 20000 scores 5, >= 5000: 4, >= 2000: 3, >= 500: 2, else 1."""
    vip_spend: Decimal = Decimal(10000)
    """VIP when net spend in the window reaches this..."""
    vip_rfm_total: int = 13
    """...or when R + F + M reaches this."""
    new_days: int = 30
    loyal_orders: int = 5
    """Loyal: at least this many orders in the last 365 days."""
    at_risk_days: int = 90
    churned_days: int = 180
    complaint_window_days: int = 30
    complaints_for_risk: int = 2
    low_csat: int = 2
    interval_factor: int = 2
    min_orders_for_interval: int = 3
    """The purchase-interval warning needs at least this many orders (two make one interval)."""
    # How much of a customer's life the record holds in full (the rest is kept apart, as totals in
    # the record and one document per fact): a record never nears MongoDB's 16 MB limit.
    orders_kept: int = 2000
    """The latest active orders held in full; rolling windows and the purchase interval read
    these, totals (count, spend, first order) count every order."""
    complaints_kept: int = 1000
    surveys_kept: int = 1000
    open_tickets_kept: int = 1000
    """The open tickets listed (the latest opened)."""
    time_zone: str = "Asia/Shanghai"
    """Where an agreement's days are days (`relations.v1` dates): active from the start of its
    first day to the end of its last."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z]{3}", self.base_currency):
            raise ValueError("base_currency must match pattern '^[A-Z]{3}$'")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.time_zone!r}") from exc
        within("vip_rfm_total", self.vip_rfm_total, ge=3, le=15)
        within("low_csat", self.low_csat, ge=1, le=5)
        within("min_orders_for_interval", self.min_orders_for_interval, ge=2)
        for name in (
            "rfm_window_days",
            "new_days",
            "loyal_orders",
            "at_risk_days",
            "churned_days",
            "complaint_window_days",
            "complaints_for_risk",
            "interval_factor",
        ):
            within(name, getattr(self, name), ge=1)
        # Their upper bounds are the store's (MongoDB's 16 MB document): `ArchiveSettings`.
        for name in ("orders_kept", "complaints_kept", "surveys_kept", "open_tickets_kept"):
            within(name, getattr(self, name), ge=1)


@dataclass(frozen=True)
class Rfm:
    recency_days: int | None
    frequency: int
    monetary: Decimal
    r: int
    f: int
    m: int

    @property
    def total(self) -> int:
        return self.r + self.f + self.m


def _score_down(value: int, limits: tuple[int, ...]) -> int:
    """Smaller is better: <= limits[0] -> 5 ... > limits[-1] -> 1."""
    for position, limit in enumerate(limits):
        if value <= limit:
            return 5 - position
    return 1


def _score_up(value: Decimal | int, limits: tuple[Decimal, ...] | tuple[int, ...]) -> int:
    """Bigger is better: >= limits[-1] -> 5 ... < limits[0] -> 1."""
    score = 1
    for limit in limits:
        if value >= limit:
            score += 1
    return score


@dataclass(frozen=True)
class OrderFact:
    placed_at: datetime
    net: Decimal
    """Amount minus refunds, in the base currency (0 for other currencies)."""


def rfm(orders: list[OrderFact], now: datetime, rules: ArchiveRules) -> Rfm:
    window_start = now - timedelta(days=rules.rfm_window_days)
    recent = [o for o in orders if window_start < o.placed_at <= now]
    last = max((o.placed_at for o in orders), default=None)
    recency = None if last is None else max(0, (now - last).days)
    frequency = len(recent)
    monetary = sum((o.net for o in recent), Decimal(0))
    return Rfm(
        recency_days=recency,
        frequency=frequency,
        monetary=monetary,
        r=1 if recency is None else _score_down(recency, rules.recency_days),
        f=_score_up(frequency, rules.frequency_orders),
        m=_score_up(monetary, rules.monetary_spend),
    )


def grade(order_count: int, score: Rfm, rules: ArchiveRules) -> Grade:
    if order_count == 0:
        return "potential"
    if score.monetary >= rules.vip_spend or score.total >= rules.vip_rfm_total:
        return "vip"
    return "ordinary"


def stage(
    order_times: list[datetime],
    now: datetime,
    rules: ArchiveRules,
    *,
    earlier: int = 0,
    earlier_first: datetime | None = None,
) -> Stage:
    """First match wins: potential, churned, one_time, new, at_risk, loyal, active.

    `order_times`: the active orders held in full; `earlier` more active orders, all placed
    before them, the first at `earlier_first` (the orders kept apart)."""
    times = [*order_times, *([earlier_first] if earlier and earlier_first else [])]
    if not times:
        return "potential"
    first, last = min(times), max(times)
    if now - last > timedelta(days=rules.churned_days):
        return "churned"
    if len(order_times) + earlier == 1 and now - first > timedelta(days=rules.new_days):
        return "one_time"
    if now - first <= timedelta(days=rules.new_days):
        return "new"
    if now - last > timedelta(days=rules.at_risk_days):
        return "at_risk"
    year_ago = now - timedelta(days=365)
    if sum(1 for t in order_times if t > year_ago) >= rules.loyal_orders:
        return "loyal"
    return "active"


def median_interval(order_times: list[datetime]) -> timedelta | None:
    """The median gap between consecutive orders (None with fewer than two orders)."""
    ordered = sorted(order_times)
    gaps = sorted(b - a for a, b in pairwise(ordered))
    if not gaps:
        return None
    middle = len(gaps) // 2
    if len(gaps) % 2:
        return gaps[middle]
    return (gaps[middle - 1] + gaps[middle]) / 2


@dataclass(frozen=True)
class ChurnFacts:
    order_times: list[datetime]
    complaint_times: list[datetime]
    surveys: list[tuple[datetime, int]]
    """(answered at, CSAT) of every survey with a CSAT."""


def churn_reasons(
    facts: ChurnFacts, now: datetime, rules: ArchiveRules
) -> dict[ChurnReason, datetime]:
    """流失预警: each reason that holds at `now`, with the moment it began to hold.

    Only what happened after the latest order counts: a new order clears every reason.
    - purchase_interval: >= 3 orders and the time since the last order reached
      `interval_factor` (2) x the customer's own median interval between orders;
    - complaints: >= 2 complaints in the last 30 days;
    - low_csat: the latest CSAT answer is <= 2.
    """
    reasons: dict[ChurnReason, datetime] = {}
    orders = sorted(t for t in facts.order_times if t <= now)
    since = orders[-1] if orders else None
    if len(orders) >= rules.min_orders_for_interval:
        typical = median_interval(orders)
        if typical and typical > timedelta(0):
            due = orders[-1] + typical * rules.interval_factor
            if now >= due:
                reasons["purchase_interval"] = due
    window_start = now - timedelta(days=rules.complaint_window_days)
    recent = sorted(
        t for t in facts.complaint_times if window_start < t <= now and (since is None or t > since)
    )
    if len(recent) >= rules.complaints_for_risk:
        reasons["complaints"] = recent[rules.complaints_for_risk - 1]
    answered = sorted(s for s in facts.surveys if s[0] <= now and (since is None or s[0] > since))
    if answered and answered[-1][1] <= rules.low_csat:
        reasons["low_csat"] = answered[-1][0]
    return reasons


def next_review(
    order_times: list[datetime],
    complaint_times: list[datetime],
    now: datetime,
    rules: ArchiveRules,
    *,
    earlier_first: datetime | None = None,
) -> datetime | None:
    """The earliest moment after `now` when a time-based rule could give another answer.
    (`earlier_first`: the first of the active orders kept apart, all before `order_times`.)"""
    candidates: list[datetime] = []
    if order_times:
        first, last = (
            min([*order_times, *([earlier_first] if earlier_first else [])]),
            max(order_times),
        )
        candidates.append(first + timedelta(days=rules.new_days, microseconds=1))
        candidates.append(last + timedelta(days=rules.at_risk_days, microseconds=1))
        candidates.append(last + timedelta(days=rules.churned_days, microseconds=1))
        candidates.extend(last + timedelta(days=d + 1) for d in rules.recency_days)
        candidates.extend(t + timedelta(days=rules.rfm_window_days) for t in order_times)
        candidates.extend(t + timedelta(days=365) for t in order_times)
        typical = median_interval(order_times)
        if typical and len(order_times) >= rules.min_orders_for_interval:
            candidates.append(last + typical * rules.interval_factor)
    candidates.extend(t + timedelta(days=rules.complaint_window_days) for t in complaint_times)
    future = [c for c in candidates if c > now]
    return min(future) if future else None


def nps(scores: list[int], *, earlier: tuple[int, int, int] = (0, 0, 0)) -> int | None:
    """Net Promoter Score (推荐值): % promoters (9-10) minus % detractors (0-6), -100..100.
    `earlier`: (answers, promoters, detractors) of the answers kept apart."""
    answers, promoters, detractors = earlier
    answers += len(scores)
    if not answers:
        return None
    promoters += sum(1 for s in scores if s >= 9)
    detractors += sum(1 for s in scores if s <= 6)
    return round(100 * (promoters - detractors) / answers)


def csat(scores: list[int], *, earlier: tuple[int, int] = (0, 0)) -> Decimal | None:
    """Average satisfaction (满意度), 1-5, two decimals. `earlier`: (answers, their sum) of the
    answers kept apart."""
    answers, total = earlier
    answers += len(scores)
    if not answers:
        return None
    return (Decimal(total + sum(scores)) / answers).quantize(Decimal("0.01"))


DEFAULT_RULES = ArchiveRules()
