"""Loyalty settings: `CRM_LOYALTY_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from crm_runtime.settings import ServiceSettings


class LoyaltySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_LOYALTY_", extra="ignore")

    service: ClassVar[str] = "loyalty"
    default_http_port: ClassVar[int] = 8083
