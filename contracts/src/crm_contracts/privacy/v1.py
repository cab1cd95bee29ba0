"""`privacy.v1`: each service's confirmation that it carried out an erasure request.

`subject` is the customer id. The archive gathers the confirmations and shows them at
`GET /customers/{id}/erasure`; the member system may follow them too.
"""

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crm_contracts.types import Identifier

CUSTOMER_ERASURE_COMPLETED = "customer.erasure_completed"

Service = Literal["archive", "tickets", "loyalty", "notify", "relations"]


class CustomerErasureCompleted(BaseModel):
    """One service forgot the customer: personal data deleted, their data key destroyed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    service: Service
    request_event_id: Identifier = Field(description="The `customer.erasure_requested` event.")
    completed_at: AwareDatetime
    kept: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="What is kept without the person, e.g. 'ledger figures' (accounting).",
    )


EVENTS: dict[str, type[BaseModel]] = {CUSTOMER_ERASURE_COMPLETED: CustomerErasureCompleted}
