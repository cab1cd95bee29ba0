"""Archive settings: `CRM_ARCHIVE_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`.

The rules are `ArchiveRules` (`domain/rules.py`, their defaults and bounds declared there once),
nested as `rules`: `CRM_ARCHIVE_RULES__VIP_SPEND=5000`, or several at once as JSON,
`CRM_ARCHIVE_RULES='{"vip_spend": "5000", "recency_days": [30, 90, 180, 365]}'`. The service
README documents each with examples.
"""

from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from crm_archive.domain.rules import ArchiveRules
from crm_runtime.bounds import within
from crm_runtime.settings import BatchRecords, Consumers, ServiceSettings


class ArchiveSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRM_ARCHIVE_", env_nested_delimiter="__", extra="ignore"
    )

    service: ClassVar[str] = "archive"
    default_http_port: ClassVar[int] = 8081

    rules: ArchiveRules = Field(default_factory=ArchiveRules)
    review_interval_s: float = Field(default=60.0, gt=0, description="The time-rules sweep.")
    batch_max_records: BatchRecords = Field(
        default=1000,
        description="Records a batch takes, those it skips included: after a backlog most of "
        "what the archive reads on loyalty.v1 is points.earned, which it skips, so a batch "
        "of 500 applied about 80 tier changes (docs/performance.md, 'Larger batches').",
    )
    consumers: Consumers = Field(
        default=2,
        description="Two batches applied side by side: the archive is the last to catch up "
        "after a backlog, and most of a batch's time is spent waiting for the store "
        "(docs/performance.md, 'The archive applies two batches at once').",
    )

    @field_validator("rules")
    @classmethod
    def _record_fits(cls, rules: ArchiveRules) -> ArchiveRules:
        """How much of a customer's life its record holds in full is bounded by the store: at
        these maxima the largest record stays under 10 MB of MongoDB's 16 MB (README)."""
        within("orders_kept", rules.orders_kept, le=20_000)
        for name in ("complaints_kept", "surveys_kept", "open_tickets_kept"):
            within(name, getattr(rules, name), le=10_000)
        return rules
