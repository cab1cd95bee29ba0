"""Configuration from the environment.

`KAFKA_BOOTSTRAP_SERVERS` and `MONGODB_URL` are shared by every service; everything else is
`CRM_<SERVICE>_<NAME>` (for example `CRM_ARCHIVE_HTTP_PORT`). `CRM_API_TOKENS` is shared too.
"""

from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROLES = ("agent", "supervisor", "ops", "integration")


class ServiceSettings(BaseSettings):
    """Settings every service has. A service subclasses it and sets `service` and `env_prefix`."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    service: ClassVar[str] = "service"
    default_http_port: ClassVar[int] = 8080

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    mongodb_url: str = Field(
        default="mongodb://127.0.0.1:27017",
        validation_alias=AliasChoices("MONGODB_URL", "mongodb_url"),
    )
    database: str = Field(default="", description="Defaults to crm_<service>.")
    http_host: str = "127.0.0.1"
    http_port: int = 0
    log_level: str = "INFO"

    consumer_group: str = Field(default="", description="Defaults to the service name.")
    batch_max_records: int = Field(default=500, ge=1, le=10_000)
    batch_timeout_ms: int = Field(default=100, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"

    outbox_relay_enabled: bool = True
    outbox_poll_interval_s: float = Field(default=0.5, gt=0)
    outbox_retention_s: int = Field(default=24 * 3600, ge=0)

    sweeps_enabled: bool = Field(default=True, description="Run the periodic sweeps.")
    clock_override_enabled: bool = Field(
        default=False,
        description="Let ops run a sweep as of another time (`?at=`): for tests and demos only.",
    )

    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=15.0, gt=0)

    api_tokens: dict[str, list[str]] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("CRM_API_TOKENS", "api_tokens"),
        description='JSON: {"<token>": ["agent", "ops"]}. Kept only as SHA-256 hashes in memory.',
    )
    api_token_hashes: dict[str, list[str]] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("CRM_API_TOKEN_HASHES", "api_token_hashes"),
        description='JSON: {"<sha256 hex of token>": ["agent"]}: no secret in the environment.',
    )

    def model_post_init(self, context: Any) -> None:
        if not self.database:
            self.database = f"crm_{self.service}"
        if not self.consumer_group:
            self.consumer_group = self.service
        if not self.http_port:
            self.http_port = self.default_http_port
