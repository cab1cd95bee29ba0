"""`archive.v1`: changes in a customer's standing, published by the archive service."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CUSTOMER_CREATED = "customer.created"

Stage = Literal["potential", "new", "active", "loyal", "at_risk", "churned", "one_time"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CustomerCreated(_Payload):
    """The archive holds a new customer record (a registration or a first sighting)."""

    stage: Stage
    stub: bool = Field(
        description="True when created from an order or contact, not a registration."
    )
    cause_event_type: str = Field(description="The inbound event type that created it.")


EVENTS: dict[str, type[BaseModel]] = {
    CUSTOMER_CREATED: CustomerCreated,
}
