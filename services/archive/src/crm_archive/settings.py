"""Archive settings: `CRM_ARCHIVE_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`.

The rule thresholds are documented with examples in the service README.
"""

from decimal import Decimal
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crm_archive.domain.rules import ArchiveRules
from crm_runtime.settings import ServiceSettings


class ArchiveSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_ARCHIVE_", extra="ignore")

    service: ClassVar[str] = "archive"
    default_http_port: ClassVar[int] = 8081

    base_currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    review_interval_s: float = Field(default=60.0, gt=0, description="The time-rules sweep.")
    rfm_window_days: int = Field(default=365, ge=1)
    recency_days: tuple[int, int, int, int] = (30, 90, 180, 365)
    frequency_orders: tuple[int, int, int, int] = (1, 2, 4, 8)
    monetary_spend: tuple[Decimal, Decimal, Decimal, Decimal] = (
        Decimal(500),
        Decimal(2000),
        Decimal(5000),
        Decimal(20000),
    )
    vip_spend: Decimal = Decimal(10000)
    vip_rfm_total: int = Field(default=13, ge=3, le=15)
    new_days: int = Field(default=30, ge=1)
    loyal_orders: int = Field(default=5, ge=1)
    at_risk_days: int = Field(default=90, ge=1)
    churned_days: int = Field(default=180, ge=1)
    complaint_window_days: int = Field(default=30, ge=1)
    complaints_for_risk: int = Field(default=2, ge=1)
    low_csat: int = Field(default=2, ge=1, le=5)
    interval_factor: int = Field(default=2, ge=1)
    # How much of a customer's life its record holds in full; the rest is kept apart (README).
    # The upper bounds keep the largest record under 10 MB of MongoDB's 16 MB.
    orders_kept: int = Field(default=2000, ge=1, le=20_000)
    complaints_kept: int = Field(default=1000, ge=1, le=10_000)
    surveys_kept: int = Field(default=1000, ge=1, le=10_000)
    open_tickets_kept: int = Field(default=1000, ge=1, le=10_000)

    def rules(self) -> ArchiveRules:
        return ArchiveRules(
            base_currency=self.base_currency,
            rfm_window_days=self.rfm_window_days,
            recency_days=self.recency_days,
            frequency_orders=self.frequency_orders,
            monetary_spend=self.monetary_spend,
            vip_spend=self.vip_spend,
            vip_rfm_total=self.vip_rfm_total,
            new_days=self.new_days,
            loyal_orders=self.loyal_orders,
            at_risk_days=self.at_risk_days,
            churned_days=self.churned_days,
            complaint_window_days=self.complaint_window_days,
            complaints_for_risk=self.complaints_for_risk,
            low_csat=self.low_csat,
            interval_factor=self.interval_factor,
            orders_kept=self.orders_kept,
            complaints_kept=self.complaints_kept,
            surveys_kept=self.surveys_kept,
            open_tickets_kept=self.open_tickets_kept,
        )
