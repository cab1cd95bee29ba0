"""The loyalty rules as data: earn rates, multipliers, promotions, bonuses, lifetimes, tiers.

Every figure is configuration, declared here once and nested in `LoyaltySettings` as `rules`:
`CRM_LOYALTY_RULES__WELCOME_BONUS=50`, maps and lists as JSON
(`CRM_LOYALTY_RULES__EARN_RATES='{"CNY": "1", "USD": "7"}'`); the README documents each with
examples. Pure code: no I/O, no framework.
"""

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Literal

from crm_runtime.bounds import within

Tier = Literal["standard", "silver", "gold", "diamond"]
TIERS: tuple[Tier, ...] = ("standard", "silver", "gold", "diamond")


def tier_rank(tier: Tier) -> int:
    return TIERS.index(tier)


@dataclass(frozen=True)
class Promotion:
    """Orders placed in [starts_at, ends_at) through one of `channels` (empty: any channel) earn
    `multiplier` times. Promotions do not stack: the highest matching multiplier applies."""

    name: str
    starts_at: datetime
    ends_at: datetime
    multiplier: Decimal
    channels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a promotion's name must have at least 1 character")
        within("multiplier", self.multiplier, gt=0)

    def applies(self, at: datetime, channel: str | None) -> bool:
        in_time = self.starts_at <= at < self.ends_at
        return in_time and (not self.channels or (channel is not None and channel in self.channels))


def add_months(moment: datetime, months: int) -> datetime:
    """The same day `months` later; the month's last day when that day does not exist."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def floor_points(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True)
class LoyaltyRules:
    earn_rates: dict[str, Decimal] = field(default_factory=lambda: {"CNY": Decimal(1)})
    tier_multipliers: dict[Tier, Decimal] = field(
        default_factory=lambda: {
            "standard": Decimal(1),
            "silver": Decimal("1.25"),
            "gold": Decimal("1.5"),
            "diamond": Decimal(2),
        }
    )
    tier_thresholds: dict[Tier, int] = field(
        default_factory=lambda: {"standard": 0, "silver": 2_000, "gold": 10_000, "diamond": 50_000}
    )
    qualifying_window_days: int = 365
    promotions: tuple[Promotion, ...] = ()
    welcome_bonus: int = 100
    birthday_bonus: int = 200
    lot_lifetime_months: int = 24
    expiring_notice_days: int = 30

    def __post_init__(self) -> None:
        within("qualifying_window_days", self.qualifying_window_days, ge=1)
        within("welcome_bonus", self.welcome_bonus, ge=0)
        within("birthday_bonus", self.birthday_bonus, ge=0)
        within("lot_lifetime_months", self.lot_lifetime_months, ge=1)
        within("expiring_notice_days", self.expiring_notice_days, ge=0)

    # -- earning ------------------------------------------------------------------------------
    def order_points(
        self, amount: Decimal, currency: str, channel: str | None, at: datetime, tier: Tier
    ) -> int:
        """Points for an order: amount x rate x tier multiplier x best promotion, rounded down.
        A currency without a rate earns nothing."""
        rate = self.earn_rates.get(currency)
        if rate is None:
            return 0
        multiplier = self.tier_multipliers.get(tier, Decimal(1)) * self.promotion_multiplier(
            at, channel
        )
        return max(0, floor_points(amount * rate * multiplier))

    def promotion_multiplier(self, at: datetime, channel: str | None) -> Decimal:
        matching = [p.multiplier for p in self.promotions if p.applies(at, channel)]
        return max(matching, default=Decimal(1))

    def expires_at(self, earned_at: datetime) -> datetime:
        return add_months(earned_at, self.lot_lifetime_months)

    # -- tiers --------------------------------------------------------------------------------
    def tier_for(self, qualifying_points: int) -> Tier:
        reached = [t for t in TIERS if qualifying_points >= self.tier_thresholds.get(t, 0)]
        return max(reached, key=tier_rank, default="standard")

    def next_tier(self, tier: Tier) -> Tier | None:
        rank = tier_rank(tier)
        return TIERS[rank + 1] if rank + 1 < len(TIERS) else None

    def window_start(self, now: datetime) -> datetime:
        return now - timedelta(days=self.qualifying_window_days)

    # -- birthdays ----------------------------------------------------------------------------
    @staticmethod
    def is_birthday(birthday: date, today: date) -> bool:
        """29 February birthdays are celebrated on 28 February in other years."""
        if (birthday.month, birthday.day) == (today.month, today.day):
            return True
        return (
            (birthday.month, birthday.day) == (2, 29)
            and (today.month, today.day) == (2, 28)
            and not calendar.isleap(today.year)
        )
