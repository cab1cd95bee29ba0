"""Tickets settings: `CRM_TICKETS_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`.

The rules are `TicketRules` (`domain/rules.py`, with the business calendar of
`domain/calendar.py`; their defaults and bounds declared there once), nested as `rules`:
`CRM_TICKETS_RULES__AUTO_CLOSE_DAYS=14`; maps and lists are JSON, e.g.
`CRM_TICKETS_RULES__TARGETS='{"P1": [1800, 14400]}'` or
`CRM_TICKETS_RULES__CALENDAR__HOLIDAYS='["2026-10-01", "2026-10-02"]'`. The service README
documents each with examples.
"""

from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from crm_runtime.bounds import within
from crm_runtime.settings import ServiceSettings
from crm_tickets.domain.rules import TicketRules


class TicketsSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRM_TICKETS_", env_nested_delimiter="__", extra="ignore"
    )

    service: ClassVar[str] = "tickets"
    default_http_port: ClassVar[int] = 8082

    rules: TicketRules = Field(default_factory=TicketRules)
    sla_interval_s: float = Field(default=60.0, gt=0, description="SLA and auto-close sweep.")
    assignment_interval_s: float = Field(default=60.0, gt=0, description="Backlog assignment.")
    report_max_days: int = Field(
        default=366, ge=1, le=3660, description="The longest range a report covers; then a 422."
    )

    @field_validator("rules")
    @classmethod
    def _ticket_fits(cls, rules: TicketRules) -> TicketRules:
        """A ticket's comments and history lines (then a 409) are bounded by the store: at these
        maxima the largest ticket stays far below MongoDB's 16 MB (README)."""
        within("max_comments", rules.max_comments, le=300)
        within("max_history", rules.max_history, ge=10, le=2000)
        return rules
