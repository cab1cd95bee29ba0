"""Loyalty settings: `CRM_LOYALTY_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`.

The rules are `LoyaltyRules` (`domain/rules.py`, their defaults and bounds declared there once),
nested as `rules`: `CRM_LOYALTY_RULES__WELCOME_BONUS=50`; maps and lists are JSON, e.g.
`CRM_LOYALTY_RULES__EARN_RATES='{"CNY": "1", "USD": "7"}'`. The service README documents each
with examples.
"""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crm_loyalty.domain.rules import LoyaltyRules
from crm_runtime.settings import ServiceSettings


class LoyaltySettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRM_LOYALTY_", env_nested_delimiter="__", extra="ignore"
    )

    service: ClassVar[str] = "loyalty"
    default_http_port: ClassVar[int] = 8083

    rules: LoyaltyRules = Field(default_factory=LoyaltyRules)
    sweep_interval_s: float = Field(
        default=3600.0, gt=0, description="Expiry, tier and birthday sweeps (each idempotent)."
    )
