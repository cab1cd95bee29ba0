"""Ticket rules as data: priority, queues, SLA targets, warning share, auto-close, reopen window.

Documented with examples in the service README. Pure code. Declared here once and nested in the
settings: `CRM_TICKETS_RULES__<NAME>` sets one (e.g. `CRM_TICKETS_RULES__AUTO_CLOSE_DAYS=14`), the
calendar's as `CRM_TICKETS_RULES__CALENDAR__<NAME>`.
"""

from dataclasses import dataclass, field
from typing import Literal

from crm_runtime.bounds import within
from crm_tickets.domain.calendar import BusinessCalendar

Priority = Literal["P1", "P2", "P3", "P4"]
SlaTarget = Literal["first_response", "resolution"]
PRIORITIES: tuple[Priority, ...] = ("P1", "P2", "P3", "P4")
SEVERITY_PRIORITY: dict[str, Priority] = {
    "critical": "P1",
    "high": "P2",
    "medium": "P3",
    "low": "P4",
}
SUPERVISOR_QUEUE = "supervisors"


@dataclass(frozen=True)
class TicketRules:
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    # Business seconds per priority: (first response, resolution).
    targets: dict[Priority, tuple[int, int]] = field(
        default_factory=lambda: {
            "P1": (30 * 60, 4 * 3600),
            "P2": (2 * 3600, 9 * 3600),
            "P3": (4 * 3600, 27 * 3600),
            "P4": (9 * 3600, 45 * 3600),
        }
    )
    warning_share: float = 0.8
    default_severity: str = "medium"
    default_category: str = "other"
    queues: dict[str, str] = field(
        default_factory=lambda: {
            "product": "product",
            "delivery": "delivery",
            "service": "service",
            "billing": "billing",
            "other": "general",
        }
    )
    vip_grades: frozenset[str] = frozenset({"vip"})
    auto_close_days: int = 7
    reopen_days: int = 7
    low_csat: int = 2
    max_comments: int = 200
    """Comments a ticket holds (a resolution's summary is one); then people get a 409. With the
    largest texts (10,000 characters, ~30 kB sealed) 200 are ~6 MB of the 16 MB a document may
    hold."""
    max_history: int = 1000
    """History lines a ticket holds: people's actions beyond it get a 409; a change from the
    system or an event (SLA, auto-close, a survey) still applies, its line is omitted and
    counted (`history_omitted`)."""

    def __post_init__(self) -> None:
        within("warning_share", self.warning_share, gt=0, lt=1)
        within("auto_close_days", self.auto_close_days, ge=1)
        within("reopen_days", self.reopen_days, ge=0)
        within("low_csat", self.low_csat, ge=1, le=5)
        # Their upper bounds are the store's (MongoDB's 16 MB document): `TicketsSettings`.
        within("max_comments", self.max_comments, ge=1)
        within("max_history", self.max_history, ge=1)

    def priority(self, severity: str, grade: str | None) -> Priority:
        """Severity sets the base (critical P1 … low P4); a VIP's ticket is one level higher."""
        base = SEVERITY_PRIORITY.get(severity, "P3")
        if grade in self.vip_grades:
            return PRIORITIES[max(0, PRIORITIES.index(base) - 1)]
        return base

    def queue(self, category: str) -> str:
        return self.queues.get(category, self.queues.get("other", "general"))

    def target(self, priority: Priority, which: SlaTarget) -> int:
        first, resolution = self.targets[priority]
        return first if which == "first_response" else resolution
