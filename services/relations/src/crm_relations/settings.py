"""Relations settings: `CRM_RELATIONS_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`.

The rules are `RelationsRules` (`domain/rules.py`, their defaults and bounds declared there once),
nested as `rules`: `CRM_RELATIONS_RULES__RECOVERY_BUSINESS_DAYS=1`; lists and nested rules are
JSON, e.g. `CRM_RELATIONS_RULES__PLANS='[{"grade": "vip", "every_days": 14, "purpose": "care"}]'`,
`CRM_RELATIONS_RULES__CALENDAR__HOLIDAYS='["2027-02-11"]'`. The service README documents each.
"""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crm_relations.domain.rules import RelationsRules
from crm_runtime.settings import ServiceSettings


class RelationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRM_RELATIONS_", env_nested_delimiter="__", extra="ignore"
    )

    service: ClassVar[str] = "relations"
    default_http_port: ClassVar[int] = 8085

    rules: RelationsRules = Field(default_factory=RelationsRules)
    sweep_interval_s: float = Field(
        default=600.0, gt=0, description="The overdue and agreement sweeps (each idempotent)."
    )
