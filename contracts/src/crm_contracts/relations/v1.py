"""`relations.v1`: follow-up tasks and agreement customers (协议客户), published by relations.

`subject` is the customer id (the Kafka key). Every task event carries `task_id`, every agreement
event `agreement_id`. Free text (a task's summary, an agreement's price note) is never published:
it may name people, and this topic is kept forever. `by` and `owner` are staff user ids.

What consumers should do with them (see `services/relations/README.md`):
- the archive: `task.completed` -> a contact on the customer's timeline, by `by`;
  `agreement.created/renewed` -> "agreement customer" until `agreement.terminated` or the end;
- tickets: `agreement.created/amended/renewed` carry `first_response_hours`, the complaint SLA
  of the customer while the agreement is active (from `starts_on` to `ends_on`);
- notify: `tasks.digest_due` -> the owner's morning digest of their due and overdue tasks (one
  per owner per business day; `subject` is the owner's user id, not a customer);
  `task.overdue` with `escalated` -> the supervisors (once per task);
  `agreement.fulfilment_at_risk`, `agreement.period_closed`, `agreement.renewal_due` -> the
  owner (the supervisors when the agreement has none).
"""

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_contracts.types import Currency, Identifier, Money

TASK_CREATED = "task.created"
TASK_COMPLETED = "task.completed"
TASK_OVERDUE = "task.overdue"
TASK_REASSIGNED = "task.reassigned"
TASK_RESCHEDULED = "task.rescheduled"
TASK_CANCELLED = "task.cancelled"
AGREEMENT_CREATED = "agreement.created"
AGREEMENT_AMENDED = "agreement.amended"
AGREEMENT_TERMINATED = "agreement.terminated"
AGREEMENT_RENEWED = "agreement.renewed"
AGREEMENT_FULFILMENT_AT_RISK = "agreement.fulfilment_at_risk"
AGREEMENT_PERIOD_CLOSED = "agreement.period_closed"
AGREEMENT_RENEWAL_DUE = "agreement.renewal_due"
TASKS_DIGEST_DUE = "tasks.digest_due"

TaskKind = Literal["follow_up", "callback", "recovery", "renewal", "agreement_review"]
Outcome = Literal["reached", "not_reached", "resolved", "declined", "other"]
Period = Literal["month", "quarter"]
Measure = Literal["spend", "orders"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Task(_Payload):
    task_id: Identifier


class TaskCreated(_Task):
    kind: TaskKind
    owner: Identifier | None = Field(
        default=None, description="The staff user; None: the team's queue."
    )
    due_at: datetime
    reason: str = Field(
        max_length=64,
        description="What made it: `plan`, `churn_risk`, `low_csat`, `agreement`, `staff`, "
        "`next_follow_up`.",
    )
    created_by: Identifier = Field(description="A user id, or `crm/relations` for the rules.")
    agreement_id: Identifier | None = None


class TaskCompleted(_Task):
    kind: TaskKind
    by: Identifier = Field(description="The user who completed it (a contact by that person).")
    outcome: Outcome
    completed_at: datetime
    due_at: datetime
    on_time: bool
    next_follow_up_on: date | None = None


class TaskOverdue(_Task):
    kind: TaskKind
    owner: Identifier | None = None
    due_at: datetime
    business_days_overdue: int = Field(ge=0)
    escalated: bool = Field(
        default=False,
        description="The task's second and last overdue notice, given once it is "
        "`ESCALATE_AFTER_BUSINESS_DAYS` late: for the supervisors.",
    )


class TaskReassigned(_Task):
    owner: Identifier | None = None
    previous_owner: Identifier | None = None
    by: Identifier


class TaskRescheduled(_Task):
    """A plan's follow-up moved: the customer's grade, stage or owner changed, or they were
    contacted."""

    owner: Identifier | None = None
    due_at: datetime


class TaskCancelled(_Task):
    by: Identifier
    reason: Literal["staff", "superseded", "erased", "agreement_ended"] = "staff"


class _Agreement(_Payload):
    agreement_id: Identifier


class AgreementTerms(_Payload):
    period: Period
    measure: Measure
    minimum: Money = Field(description="Per period: an amount in `currency`, or an order count.")
    currency: Currency
    first_response_hours: int | None = Field(
        default=None, ge=1, le=720, description="Complaints: first response, business hours."
    )
    renewal_notice_days: int = Field(ge=0, le=365)


class AgreementCreated(_Agreement):
    number: Identifier
    owner: Identifier | None = None
    starts_on: date
    ends_on: date
    terms: AgreementTerms


class AgreementAmended(_Agreement):
    owner: Identifier | None = None
    ends_on: date
    terms: AgreementTerms
    by: Identifier


class AgreementTerminated(_Agreement):
    terminated_on: date
    by: Identifier


class AgreementRenewed(_Agreement):
    starts_on: date
    ends_on: date
    previous_ends_on: date
    by: Identifier


class AgreementFulfilmentAtRisk(_Agreement):
    period_start: date
    period_end: date
    measure: Measure
    minimum: Money
    fulfilled: Money
    projected: Money
    currency: Currency
    owner: Identifier | None = Field(default=None, description="The agreement's owner.")
    share_left: float = Field(ge=0, le=1, description="The share of the period still to come.")


class AgreementPeriodClosed(_Agreement):
    period_start: date
    period_end: date
    measure: Measure
    minimum: Money
    fulfilled: Money
    currency: Currency
    met: bool
    owner: Identifier | None = Field(default=None, description="The agreement's owner.")


class AgreementRenewalDue(_Agreement):
    ends_on: date
    notice_days: int = Field(ge=0)
    owner: Identifier | None = None


DIGEST_TASKS_LIMIT = 50
"""Tasks a digest lists at most (the counts cover all of them)."""


class DigestTask(_Payload):
    """One line of an owner's digest: no free text, the customer by id only."""

    task_id: Identifier
    customer_id: Identifier
    kind: TaskKind
    due_at: datetime
    overdue: bool
    business_days_overdue: int = Field(ge=0)


class TasksDigestDue(_Payload):
    """An owner's morning digest (one per owner per business day): their open tasks due by the
    close of `day` and their overdue ones, oldest first. `subject` is the owner's user id."""

    owner: Identifier
    day: date
    due_today: int = Field(ge=0, description="Open tasks due by the close of `day`.")
    overdue: int = Field(ge=0, description="Tasks past their due time.")
    tasks: list[DigestTask] = Field(max_length=DIGEST_TASKS_LIMIT)


EVENTS: dict[str, type[BaseModel]] = {
    TASK_CREATED: TaskCreated,
    TASK_COMPLETED: TaskCompleted,
    TASK_OVERDUE: TaskOverdue,
    TASK_REASSIGNED: TaskReassigned,
    TASK_RESCHEDULED: TaskRescheduled,
    TASK_CANCELLED: TaskCancelled,
    AGREEMENT_CREATED: AgreementCreated,
    AGREEMENT_AMENDED: AgreementAmended,
    AGREEMENT_TERMINATED: AgreementTerminated,
    AGREEMENT_RENEWED: AgreementRenewed,
    AGREEMENT_FULFILMENT_AT_RISK: AgreementFulfilmentAtRisk,
    AGREEMENT_PERIOD_CLOSED: AgreementPeriodClosed,
    AGREEMENT_RENEWAL_DUE: AgreementRenewalDue,
    TASKS_DIGEST_DUE: TasksDigestDue,
}
