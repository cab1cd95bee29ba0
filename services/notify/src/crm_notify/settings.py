"""Notify settings: `CRM_NOTIFY_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from crm_runtime.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_NOTIFY_", extra="ignore")

    service: ClassVar[str] = "notify"
    default_http_port: ClassVar[int] = 8084
