"""A customer's record and how an order changes it."""

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

Stage = Literal["potential", "new", "active", "loyal", "at_risk", "churned", "one_time"]


@dataclass(frozen=True)
class OrderPlaced:
    """The facts of an order that the ledger keeps."""

    order_id: str
    amount: Decimal
    currency: str
    placed_at: datetime


@dataclass(frozen=True)
class CustomerCreated:
    """Domain event: the ledger holds a customer it did not hold before."""

    customer_id: str
    stage: Stage
    stub: bool
    cause: str


DomainEvent = CustomerCreated


@dataclass(frozen=True)
class Customer:
    id: str
    created_at: datetime
    updated_at: datetime
    stage: Stage = "potential"
    stub: bool = True
    """True until a registration tells us who the customer is."""
    order_count: int = 0
    total_spent: Decimal = Decimal(0)
    """Spend in the base currency."""
    foreign_spent: dict[str, Decimal] = field(default_factory=dict)
    """Spend in other currencies, by ISO 4217 code (not converted)."""
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    version: int = 0
    """How many times the record was saved: guards against concurrent writers."""

    @staticmethod
    def stub_for(customer_id: str, at: datetime) -> "Customer":
        return Customer(id=customer_id, created_at=at, updated_at=at)


def record_order(
    customer: Customer | None,
    customer_id: str,
    order: OrderPlaced,
    *,
    base_currency: str,
    now: datetime,
    cause: str = "order.placed",
) -> tuple[Customer, list[DomainEvent]]:
    """Add an order to the customer's figures, creating a stub customer on first sight."""
    events: list[DomainEvent] = []
    if customer is None:
        customer = Customer.stub_for(customer_id, now)
        events.append(CustomerCreated(customer_id, customer.stage, customer.stub, cause))
    total, foreign = customer.total_spent, customer.foreign_spent
    if order.currency == base_currency:
        total += order.amount
    else:
        foreign = {
            **foreign,
            order.currency: foreign.get(order.currency, Decimal(0)) + order.amount,
        }
    first = customer.first_order_at
    last = customer.last_order_at
    updated = replace(
        customer,
        order_count=customer.order_count + 1,
        total_spent=total,
        foreign_spent=foreign,
        first_order_at=order.placed_at if first is None else min(first, order.placed_at),
        last_order_at=order.placed_at if last is None else max(last, order.placed_at),
        updated_at=now,
    )
    return updated, events
