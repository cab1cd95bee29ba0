"""Notify settings: `CRM_NOTIFY_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`.

Documented in the service README. Maps are JSON, e.g.
`CRM_NOTIFY_HOLIDAYS='{"2027-02-06": "春节"}'`.
"""

from datetime import date, time
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crm_notify.domain.policy import NotifyRules
from crm_runtime.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_NOTIFY_", extra="ignore")

    service: ClassVar[str] = "notify"
    default_http_port: ClassVar[int] = 8084

    # Email
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_secondary_host: str | None = None
    smtp_secondary_port: int = 25
    mail_from: str = "客户服务 <care@example.com>"
    # SMS (an HTTP provider)
    sms_url: str | None = None
    sms_secondary_url: str | None = None
    sms_token: str | None = None
    # Staff alerts
    staff_webhook_url: str | None = None
    staff_webhook_secret: str = "change-me"
    # Policy
    quiet_start: time = time(21, 0)
    quiet_end: time = time(9, 0)
    daily_cap: int = Field(default=3, ge=0, description="Marketing messages per customer per day.")
    max_attempts: int = Field(default=8, ge=1)
    retry_initial_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=900.0, gt=0)
    failover_threshold: int = Field(default=3, ge=1)
    failover_cooldown_s: float = Field(default=60.0, gt=0)
    care_time_zone: str = "Asia/Shanghai"
    holidays: dict[date, str] = Field(default_factory=dict, description="Date -> holiday name.")
    deliver_interval_s: float = Field(default=2.0, gt=0)
    send_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="One send is abandoned (and retried) after this; a claim lasts twice as long.",
    )
    care_interval_s: float = Field(default=3600.0, gt=0)
    digest_interval_s: float = Field(default=3600.0, gt=0)

    def rules(self) -> NotifyRules:
        return NotifyRules(
            quiet_start=self.quiet_start,
            quiet_end=self.quiet_end,
            daily_cap=self.daily_cap,
            max_attempts=self.max_attempts,
            retry_initial_s=self.retry_initial_s,
            retry_max_s=self.retry_max_s,
        )
