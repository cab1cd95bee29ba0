"""What a change to a customer's record means to others: the domain events `Customer.evaluate`
returns (the handlers turn them into `archive.v1` events)."""

from dataclasses import dataclass
from datetime import datetime

from crm_archive.domain.rules import ChurnReason, Grade, Stage


@dataclass(frozen=True)
class Created:
    stage: Stage
    stub: bool
    cause: str


@dataclass(frozen=True)
class ProfileChanged:
    fields: tuple[str, ...]


@dataclass(frozen=True)
class GradeChanged:
    grade: Grade
    previous: Grade | None


@dataclass(frozen=True)
class StageChanged:
    stage: Stage
    previous: Stage | None


@dataclass(frozen=True)
class ChurnRiskRaised:
    reasons: tuple[ChurnReason, ...]
    at: datetime


@dataclass(frozen=True)
class ChurnRiskCleared:
    cleared_by: str


DomainEvent = (
    Created | ProfileChanged | GradeChanged | StageChanged | ChurnRiskRaised | ChurnRiskCleared
)
