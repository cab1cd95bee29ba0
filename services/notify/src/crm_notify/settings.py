"""Notify settings: `CRM_NOTIFY_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`.

Documented in the service README. The policy is `NotifyRules` (`domain/policy.py`, its defaults
and bounds declared there once), nested as `rules`: `CRM_NOTIFY_RULES__DAILY_CAP=5`,
`CRM_NOTIFY_RULES__QUIET_START=22:00`. Maps are JSON, e.g.
`CRM_NOTIFY_HOLIDAYS='{"2027-02-06": "春节"}'`; the staff address book
`CRM_NOTIFY_STAFF='{"li.wei": {"email": "li.wei@example.cn", "locale": "zh-CN", "roles":
["supervisor"]}}'` (a bad entry stops the start with the entry and the reason named).
"""

from datetime import date
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crm_notify.domain.policy import NotifyRules
from crm_notify.domain.staff import StaffMember
from crm_runtime.settings import ServiceSettings

DEFAULT_WEBHOOK_SECRET = "change-me"
"""Signs staff webhooks on the local stack only: off loopback, a service refuses to start with
it (`insecure_settings`)."""


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRM_NOTIFY_", env_nested_delimiter="__", extra="ignore"
    )

    service: ClassVar[str] = "notify"
    default_http_port: ClassVar[int] = 8084

    rules: NotifyRules = Field(default_factory=NotifyRules)
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
    staff_webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    staff: dict[str, StaffMember] = Field(
        default_factory=dict,
        description="The staff address book by user id (the tokens' names): email, locale "
        "(zh-CN, en), roles (`supervisor` gets escalations), name. Owners' task digests and "
        "agreement alerts go to these addresses.",
    )
    # Failover between a channel's providers
    failover_threshold: int = Field(default=3, ge=1)
    failover_cooldown_s: float = Field(default=60.0, gt=0)
    # Care messages and sweeps
    care_time_zone: str = "Asia/Shanghai"
    holidays: dict[date, str] = Field(default_factory=dict, description="Date -> holiday name.")
    deliver_interval_s: float = Field(default=2.0, gt=0)
    send_now_enabled: bool | None = Field(
        default=None,
        description="Send what a batch decided is due right after its commit. Default: as "
        "SWEEPS_ENABLED (without both, nothing is sent but on demand). A replica that sweeps "
        "nothing still sends what it decides with it on (ADR 0028).",
    )
    send_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="One send is abandoned (and retried) after this; a claim lasts twice as long.",
    )
    care_interval_s: float = Field(default=3600.0, gt=0)
    digest_interval_s: float = Field(default=3600.0, gt=0)
    awaiting_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="How often messages whose wait for their customer's registration is over "
        "(`rules.registration_wait_s`) are decided.",
    )

    def sends_now(self) -> bool:
        """Whether the delivery worker sends what a batch decided right after its commit."""
        return self.sweeps_enabled if self.send_now_enabled is None else self.send_now_enabled

    def insecure_settings(self) -> list[str]:
        """Beyond the runtime's: a staff webhook signed with the default secret (anyone can
        forge one), an SMTP password sent without STARTTLS (in clear on the network)."""
        found = super().insecure_settings()
        if self.staff_webhook_url and self.staff_webhook_secret in ("", DEFAULT_WEBHOOK_SECRET):
            found.append(
                f"CRM_NOTIFY_STAFF_WEBHOOK_SECRET is {self.staff_webhook_secret!r} while "
                "CRM_NOTIFY_STAFF_WEBHOOK_URL is set: anyone can sign a staff webhook"
            )
        if self.smtp_password and not self.smtp_starttls:
            found.append(
                "CRM_NOTIFY_SMTP_PASSWORD is set while CRM_NOTIFY_SMTP_STARTTLS is false: "
                "the password would cross the network in clear"
            )
        return found
