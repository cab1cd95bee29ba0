"""Loyalty settings: `CRM_LOYALTY_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`.

The rules are documented with examples in the service README. Maps and lists are JSON, e.g.
`CRM_LOYALTY_EARN_RATES='{"CNY": "1", "USD": "7"}'`.
"""

from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from crm_loyalty.domain.rules import LoyaltyRules, Promotion, Tier
from crm_runtime.settings import ServiceSettings


class PromotionSetting(BaseModel):
    name: str = Field(min_length=1)
    starts_at: datetime
    ends_at: datetime
    multiplier: Decimal = Field(gt=0)
    channels: list[str] = Field(default_factory=list)


class LoyaltySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_LOYALTY_", extra="ignore")

    service: ClassVar[str] = "loyalty"
    default_http_port: ClassVar[int] = 8083

    earn_rates: dict[str, Decimal] = Field(
        default_factory=lambda: {"CNY": Decimal(1)},
        description="Points per currency unit, per ISO currency; other currencies earn nothing.",
    )
    tier_multipliers: dict[Tier, Decimal] = Field(
        default_factory=lambda: dict(LoyaltyRules().tier_multipliers),
        description="Earn multiplier by the customer's tier when the order is placed.",
    )
    tier_thresholds: dict[Tier, int] = Field(
        default_factory=lambda: dict(LoyaltyRules().tier_thresholds),
        description="Qualifying points (earned on orders in the window) to reach each tier.",
    )
    qualifying_window_days: int = Field(default=365, ge=1)
    promotions: list[PromotionSetting] = Field(default_factory=list)
    welcome_bonus: int = Field(default=100, ge=0)
    birthday_bonus: int = Field(default=200, ge=0)
    lot_lifetime_months: int = Field(default=24, ge=1)
    expiring_notice_days: int = Field(default=30, ge=0)
    sweep_interval_s: float = Field(
        default=3600.0, gt=0, description="Expiry, tier and birthday sweeps (each idempotent)."
    )

    def rules(self) -> LoyaltyRules:
        return LoyaltyRules(
            earn_rates=dict(self.earn_rates),
            tier_multipliers=dict(self.tier_multipliers),
            tier_thresholds=dict(self.tier_thresholds),
            qualifying_window_days=self.qualifying_window_days,
            promotions=tuple(
                Promotion(p.name, p.starts_at, p.ends_at, p.multiplier, tuple(p.channels))
                for p in self.promotions
            ),
            welcome_bonus=self.welcome_bonus,
            birthday_bonus=self.birthday_bonus,
            lot_lifetime_months=self.lot_lifetime_months,
            expiring_notice_days=self.expiring_notice_days,
        )
