"""Console settings: `CRM_CONSOLE_*`. Documented in the service README.

The console has no database and no broker: it knows only where the services answer and how to
keep a session. Sign-in is with a person's own API token (ADR 0010), so nothing here lists people.
"""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("archive", "tickets", "loyalty", "notify", "relations")


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_CONSOLE_", extra="ignore")

    service: ClassVar[str] = "console"

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_level: str = "INFO"

    archive_url: str = "http://127.0.0.1:8081"
    tickets_url: str = "http://127.0.0.1:8082"
    loyalty_url: str = "http://127.0.0.1:8083"
    notify_url: str = "http://127.0.0.1:8084"
    relations_url: str = "http://127.0.0.1:8085"
    request_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="One call to a service; past it, that part shows unavailable.",
    )

    secure_cookies: bool = Field(
        default=False,
        description="Mark the cookies Secure: set it whenever the console is served over TLS "
        "(behind an ingress that terminates it, too).",
    )
    session_idle_s: int = Field(
        default=8 * 3600, ge=60, description="A session unused this long is signed out."
    )
    max_sessions: int = Field(
        default=10_000, ge=1, description="Sessions held at once; the least recently used goes."
    )
    default_locale: str = Field(
        default="zh-CN", pattern=r"^(zh-CN|en)$", description="When Accept-Language names neither."
    )
    time_zone: str = Field(default="Asia/Shanghai", description="Times are shown in this zone.")

    def service_urls(self) -> dict[str, str]:
        return {
            "archive": self.archive_url.rstrip("/"),
            "tickets": self.tickets_url.rstrip("/"),
            "loyalty": self.loyalty_url.rstrip("/"),
            "notify": self.notify_url.rstrip("/"),
            "relations": self.relations_url.rstrip("/"),
        }
