"""`orders.v1`: what the order system tells us. A promise to integrators: additive changes only."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_contracts.types import Currency, Identifier, Money, ShortText

ORDER_PLACED = "order.placed"
ORDER_REFUNDED = "order.refunded"
ORDER_CANCELLED = "order.cancelled"

OrderChannel = Literal["web", "app", "store", "phone"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderItem(_Payload):
    sku: Identifier
    qty: int = Field(ge=1, le=100_000)
    unit_price: Money
    category: ShortText | None = Field(
        default=None, description="The product category (the archive ranks spend by it)."
    )


class OrderPlaced(_Payload):
    """A customer placed an order. `amount` is what they pay, in `currency`."""

    order_id: Identifier
    amount: Money
    currency: Currency
    items: list[OrderItem] = Field(default_factory=list, max_length=1000)
    channel: OrderChannel | None = None
    store_id: Identifier | None = None


class OrderRefunded(_Payload):
    """Part or all of an order was refunded; `amount` is the refunded part."""

    order_id: Identifier
    amount: Money
    currency: Currency | None = Field(
        default=None, description="Defaults to the currency of the order."
    )
    reason: ShortText | None = None


class OrderCancelled(_Payload):
    """An order was cancelled before fulfilment: it counts as if never placed."""

    order_id: Identifier
    reason: ShortText | None = None


EVENTS: dict[str, type[BaseModel]] = {
    ORDER_PLACED: OrderPlaced,
    ORDER_REFUNDED: OrderRefunded,
    ORDER_CANCELLED: OrderCancelled,
}
