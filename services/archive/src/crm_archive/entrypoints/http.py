"""The archive's query API (port 8081)."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel

from crm_archive.domain.customer import Customer, Stage
from crm_archive.handlers import CustomerRepository
from crm_runtime.auth import Authenticator, Principal

CustomerId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s]+$")]


class CustomerView(BaseModel):
    id: str
    stage: Stage
    stub: bool
    order_count: int
    total_spent: str
    currency: str
    foreign_spent: dict[str, str]
    first_order_at: datetime | None
    last_order_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def of(customer: Customer, currency: str) -> "CustomerView":
        return CustomerView(
            id=customer.id,
            stage=customer.stage,
            stub=customer.stub,
            order_count=customer.order_count,
            total_spent=format(customer.total_spent, "f"),
            currency=currency,
            foreign_spent={k: format(v, "f") for k, v in customer.foreign_spent.items()},
            first_order_at=customer.first_order_at,
            last_order_at=customer.last_order_at,
            created_at=customer.created_at,
            updated_at=customer.updated_at,
        )


def customers_router(
    repository: CustomerRepository, auth: Authenticator, *, base_currency: str
) -> APIRouter:
    router = APIRouter(tags=["customers"])
    reader = auth.require("agent", "supervisor", "ops")

    @router.get(
        "/customers/{customer_id}",
        summary="A customer's record: value figures and stage.",
        responses={404: {"description": "No such customer."}},
    )
    async def get_customer(
        customer_id: CustomerId, principal: Annotated[Principal, Depends(reader)]
    ) -> CustomerView:
        customer = await repository.get(customer_id)
        if customer is None:
            raise HTTPException(404, f"no customer {customer_id!r}")
        return CustomerView.of(customer, base_currency)

    return router
