"""Tickets settings: `CRM_TICKETS_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from crm_runtime.settings import ServiceSettings


class TicketsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_TICKETS_", extra="ignore")

    service: ClassVar[str] = "tickets"
    default_http_port: ClassVar[int] = 8082
