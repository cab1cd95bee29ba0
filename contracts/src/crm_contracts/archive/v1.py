"""`archive.v1`: changes in a customer's standing, published by the archive service.

Published only on real changes, through the outbox. `subject` is the customer id.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CUSTOMER_CREATED = "customer.created"
CUSTOMER_UPDATED = "customer.updated"
CUSTOMER_GRADE_CHANGED = "customer.grade_changed"
CUSTOMER_LIFECYCLE_CHANGED = "customer.lifecycle_changed"
CUSTOMER_CHURN_RISK_RAISED = "customer.churn_risk_raised"
CUSTOMER_CHURN_RISK_CLEARED = "customer.churn_risk_cleared"

Stage = Literal["potential", "new", "active", "loyal", "at_risk", "churned", "one_time"]
Grade = Literal["vip", "ordinary", "potential"]
ChurnReason = Literal["purchase_interval", "complaints", "low_csat"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CustomerCreated(_Payload):
    """The archive holds a new customer record (a registration or a first sighting)."""

    stage: Stage
    stub: bool = Field(
        description="True when created from an order or contact, not a registration."
    )
    cause_event_type: str = Field(description="The inbound event type that created it.")


class CustomerUpdated(_Payload):
    """Profile fields changed; only the names of the fields, never their (personal) values."""

    changed: list[str] = Field(max_length=50)


class CustomerGradeChanged(_Payload):
    grade: Grade
    previous_grade: Grade | None = None


class CustomerLifecycleChanged(_Payload):
    stage: Stage
    previous_stage: Stage | None = None


class CustomerChurnRiskRaised(_Payload):
    """流失预警: why we think we are losing the customer."""

    reasons: list[ChurnReason] = Field(min_length=1)
    detected_at: datetime


class CustomerChurnRiskCleared(_Payload):
    cleared_by: str = Field(description="What cleared it, e.g. `order.placed`.")


EVENTS: dict[str, type[BaseModel]] = {
    CUSTOMER_CREATED: CustomerCreated,
    CUSTOMER_UPDATED: CustomerUpdated,
    CUSTOMER_GRADE_CHANGED: CustomerGradeChanged,
    CUSTOMER_LIFECYCLE_CHANGED: CustomerLifecycleChanged,
    CUSTOMER_CHURN_RISK_RAISED: CustomerChurnRiskRaised,
    CUSTOMER_CHURN_RISK_CLEARED: CustomerChurnRiskCleared,
}
