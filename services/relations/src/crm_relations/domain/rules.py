"""The relations rules as data: maintenance plans, task due dates, the business calendar,
agreement monitoring.

Every figure is configuration, declared here once and nested in `RelationsSettings` as `rules`:
`CRM_RELATIONS_RULES__RECOVERY_BUSINESS_DAYS=1`; lists, maps and nested rules as JSON, e.g.
`CRM_RELATIONS_RULES__PLANS='[{"grade": "vip", "every_days": 14, "purpose": "VIP care"}]'`
or `CRM_RELATIONS_RULES__CALENDAR__HOLIDAYS='["2027-02-11"]'`. Pure code: no I/O, no framework.
"""

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from crm_runtime.bounds import within
from crm_runtime.calendar import BusinessCalendar


@dataclass(frozen=True)
class Plan:
    """How often and why customers of a grade (and stage) are followed up (定期回访).

    A plan with `first_days` applies only during a customer's first `first_days` days (from when
    relations first saw them). `grade` or `stage` None: any."""

    every_days: int
    purpose: str
    grade: str | None = None
    stage: str | None = None
    first_days: int | None = None

    def __post_init__(self) -> None:
        within("every_days", self.every_days, ge=1, le=3650)
        if not self.purpose:
            raise ValueError("a plan's purpose must have at least 1 character")
        if self.first_days is not None:
            within("first_days", self.first_days, ge=1, le=3650)

    def applies(
        self, grade: str | None, stage: str | None, first_seen: datetime, now: datetime
    ) -> bool:
        if self.grade is not None and self.grade != grade:
            return False
        if self.stage is not None and self.stage != stage:
            return False
        return self.first_days is None or now < first_seen + timedelta(days=self.first_days)


def default_plans() -> tuple[Plan, ...]:
    return (
        Plan(every_days=30, purpose="VIP care", grade="vip"),
        Plan(every_days=14, purpose="first weeks: convert", grade="potential", first_days=60),
        Plan(every_days=90, purpose="regular care", grade="ordinary"),
    )


@dataclass(frozen=True)
class RelationsRules:
    plans: tuple[Plan, ...] = field(default_factory=default_plans)
    """The first plan that applies to a customer is theirs; none: no planned follow-up."""
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    """Business days for due dates: the same rules as the tickets' SLA calendar."""
    recovery_business_days: int = 2
    """A churn warning (流失预警) -> a recovery call for the owner within this many days."""
    callback_business_days: int = 1
    """A low CSAT -> a callback within this many business days."""
    low_csat: int = 2
    """A CSAT at or below this is low."""
    agreement_task_business_days: int = 2
    """Tasks made by agreement events (at risk, period closed, renewal due) are due in this."""
    escalate_after_business_days: int = 5
    """A task overdue by this many business days is announced again (for supervisors)."""
    at_risk_share_left: float = 0.5
    """Fulfilment is judged at risk only once at most this share of a period is left (earlier,
    a projection from a few days says little)."""
    default_renewal_notice_days: int = 30
    digest_at: time = time(8, 30)
    """Each owner's morning digest of due and overdue tasks goes from this local time (the
    calendar's zone) of each business day, once per owner and day."""
    digest_limit: int = 50
    """Tasks a digest lists at most (oldest due first; the counts cover all)."""

    def __post_init__(self) -> None:
        within("recovery_business_days", self.recovery_business_days, ge=0, le=60)
        within("callback_business_days", self.callback_business_days, ge=0, le=60)
        within("low_csat", self.low_csat, ge=1, le=5)
        within("agreement_task_business_days", self.agreement_task_business_days, ge=0, le=60)
        within("escalate_after_business_days", self.escalate_after_business_days, ge=1, le=365)
        within("at_risk_share_left", self.at_risk_share_left, ge=0, le=1)
        within("default_renewal_notice_days", self.default_renewal_notice_days, ge=0, le=365)
        within("digest_limit", self.digest_limit, ge=1, le=50)

    def plan_for(
        self, grade: str | None, stage: str | None, first_seen: datetime, now: datetime
    ) -> Plan | None:
        return next((p for p in self.plans if p.applies(grade, stage, first_seen, now)), None)
