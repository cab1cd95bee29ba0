"""The JSON the relations API takes and gives: request and response models, and the views made
from domain records."""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from crm_relations.domain.agreement import (
    Agreement,
    AgreementStatus,
    Measure,
    Period,
    PeriodFigures,
    Terms,
)
from crm_relations.domain.task import Outcome, Task, TaskKind, TaskStatus
from crm_runtime.views import view

UserId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
]
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Day = Annotated[date, Field(ge=date(2000, 1, 1), le=date(2199, 12, 31))]
"""A date the calendar arithmetic can go past by a quarter or a holiday season: 2000-2199."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskRequest(_Request):
    customer_id: Id
    kind: TaskKind = "follow_up"
    owner: UserId | None = Field(default=None, description="Default: you. Supervisors: anyone.")
    queue: bool = Field(default=False, description="True: for the team's queue (no owner).")
    due_on: Day | None = Field(default=None, description="Due at that business day's close.")
    due_in_business_days: int | None = Field(default=None, ge=0, le=60)
    summary: str | None = Field(default=None, max_length=2000, description="Purpose (sealed).")


class CompleteRequest(_Request):
    outcome: Outcome
    summary: str | None = Field(default=None, max_length=2000, description="Sealed at rest.")
    next_follow_up_on: Day | None = Field(
        default=None, description="Schedules the customer's next follow-up on that day."
    )


class ReassignRequest(_Request):
    owner: UserId | None = Field(description="A user id; null: the team's queue.")


class TaskView(BaseModel):
    task_id: str
    customer_id: str
    kind: TaskKind
    owner: str | None
    due_at: datetime
    status: TaskStatus
    reason: str
    created_at: datetime
    created_by: str
    agreement_id: str | None
    outcome: Outcome | None
    completed_at: datetime | None
    completed_by: str | None
    on_time: bool | None


class TaskDetail(TaskView):
    summary: str | None


def task_view(task: Task) -> TaskView:
    return view(TaskView, task)


class TermsModel(_Request):
    period: Period
    measure: Measure = "spend"
    minimum: Decimal = Field(ge=0, max_digits=16, decimal_places=4)
    currency: Currency = "CNY"
    first_response_hours: int | None = Field(default=None, ge=1, le=720)
    renewal_notice_days: int = Field(default=30, ge=0, le=365)
    price_note: str | None = Field(
        default=None, max_length=500, description="Agreed discount or price (sealed)."
    )

    def to_terms(self) -> Terms:
        return Terms(
            period=self.period,
            measure=self.measure,
            minimum=self.minimum,
            currency=self.currency,
            renewal_notice_days=self.renewal_notice_days,
            first_response_hours=self.first_response_hours,
            price_note=self.price_note,
        )


class AgreementRequest(_Request):
    customer_id: Id
    number: Id
    owner: UserId | None = None
    starts_on: Day
    ends_on: Day
    terms: TermsModel


class AmendRequest(_Request):
    owner: UserId | None
    ends_on: Day
    terms: TermsModel


class TerminateRequest(_Request):
    on: Day


class RenewRequest(_Request):
    ends_on: Day


class FulfilmentView(BaseModel):
    period_start: date
    period_end: date
    fulfilled: Decimal
    projected: Decimal
    minimum: Decimal
    share_left: float
    closed: bool
    met: bool | None


class TermsView(BaseModel):
    period: Period
    measure: Measure
    minimum: Decimal
    currency: str
    first_response_hours: int | None
    renewal_notice_days: int
    price_note: str | None


class AgreementView(BaseModel):
    agreement_id: str
    customer_id: str
    number: str
    owner: str | None
    starts_on: date
    ends_on: date
    status: AgreementStatus
    terms: TermsView
    created_by: str
    current_period: FulfilmentView | None
    periods: list[FulfilmentView]


def agreement_view(agreement: Agreement, now: datetime, zone: ZoneInfo) -> AgreementView:
    """The agreement with each period's figures and the current period's projection."""

    def figures_view(figures: PeriodFigures) -> FulfilmentView:
        fulfilled, projected, left = agreement.projection(figures, now, zone)
        return view(
            FulfilmentView,
            figures,
            period_start=figures.start,
            period_end=figures.end,
            fulfilled=fulfilled,
            projected=projected,
            minimum=agreement.terms.minimum,
            share_left=left,
        )

    today = now.astimezone(zone).date()
    current = agreement.peek(today) if agreement.covers(today) else None
    return view(
        AgreementView,
        agreement,
        terms=view(TermsView, agreement.terms),
        current_period=figures_view(current) if current else None,
        periods=[figures_view(p) for p in agreement.periods],
    )
