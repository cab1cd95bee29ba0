"""Archive settings: `CRM_ARCHIVE_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crm_runtime.settings import ServiceSettings


class ArchiveSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_ARCHIVE_", extra="ignore")

    service: ClassVar[str] = "archive"
    default_http_port: ClassVar[int] = 8081

    base_currency: str = Field(
        default="CNY", pattern=r"^[A-Z]{3}$", description="Spend in it is summed in total_spent."
    )
