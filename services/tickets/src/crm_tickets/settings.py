"""Tickets settings: `CRM_TICKETS_*` plus the shared `KAFKA_BOOTSTRAP_SERVERS`, `MONGODB_URL`.

The rules are documented with examples in the service README. Maps and lists are JSON, e.g.
`CRM_TICKETS_HOLIDAYS='["2026-10-01", "2026-10-02"]'`.
"""

from datetime import date, time
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from crm_runtime.settings import ServiceSettings
from crm_tickets.domain.calendar import BusinessCalendar
from crm_tickets.domain.rules import Priority, TicketRules


class TicketsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_TICKETS_", extra="ignore")

    service: ClassVar[str] = "tickets"
    default_http_port: ClassVar[int] = 8082

    time_zone: str = "Asia/Shanghai"
    opens: time = time(9, 0)
    closes: time = Field(default=time(18, 0), description="00:00 = midnight (a 24-hour day).")
    working_weekdays: list[int] = Field(default=[0, 1, 2, 3, 4], description="Monday = 0.")
    holidays: list[date] = Field(default_factory=list)
    extra_working_days: list[date] = Field(
        default_factory=list, description="Weekend days worked instead of a holiday (调休)."
    )
    sla_targets: dict[Priority, tuple[int, int]] = Field(
        default_factory=lambda: dict(TicketRules().targets),
        description="Business seconds per priority: [first response, resolution].",
    )
    warning_share: float = Field(default=0.8, gt=0, lt=1)
    queues: dict[str, str] = Field(default_factory=lambda: dict(TicketRules().queues))
    vip_grades: list[str] = Field(default=["vip"])
    auto_close_days: int = Field(default=7, ge=1)
    reopen_days: int = Field(default=7, ge=0)
    low_csat: int = Field(default=2, ge=1, le=5)
    sla_interval_s: float = Field(default=60.0, gt=0, description="SLA and auto-close sweep.")
    assignment_interval_s: float = Field(default=60.0, gt=0, description="Backlog assignment.")
    max_comments: int = Field(
        default=200, ge=1, le=300, description="Comments a ticket holds; then a 409."
    )
    max_history: int = Field(
        default=1000, ge=10, le=2000, description="History lines a ticket holds; then a 409."
    )
    report_max_days: int = Field(
        default=366, ge=1, le=3660, description="The longest range a report covers; then a 422."
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def rules(self) -> TicketRules:
        return TicketRules(
            calendar=BusinessCalendar(
                time_zone=self.time_zone,
                opens=self.opens,
                closes=self.closes,
                working_weekdays=frozenset(self.working_weekdays),
                holidays=frozenset(self.holidays),
                extra_working_days=frozenset(self.extra_working_days),
            ),
            targets=dict(self.sla_targets),
            warning_share=self.warning_share,
            queues=dict(self.queues),
            vip_grades=frozenset(self.vip_grades),
            auto_close_days=self.auto_close_days,
            reopen_days=self.reopen_days,
            low_csat=self.low_csat,
            max_comments=self.max_comments,
            max_history=self.max_history,
        )
