"""What a record keeps apart (ADR 0008): the exact totals of the facts it no longer holds in full
(`Earlier`), the facts a batch refers to (`FactIds`), and a batch's traffic with them (`Apart`).
`Customer.recall` and `Customer.compact` move facts between the record and the place apart."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from crm_archive.domain.facts import CENT, Order, Survey


def _canonical(amount: Decimal) -> Decimal:
    """One form per value, so that a running total does not keep the exponent of its history
    (10.50 + 1.0001 - 1.0001 is 10.5000): 0, or two decimals, or as many as it needs."""
    if not amount:
        return Decimal(0)
    cents = amount.quantize(CENT)
    return cents if cents == amount else amount.normalize()


@dataclass
class Earlier:
    """The exact totals of the facts kept apart (all older than those the record holds)."""

    orders: int = 0
    """Active orders (placed, not cancelled) kept apart."""
    base_orders: int = 0
    base_net: Decimal = Decimal(0)
    foreign: dict[str, Decimal] = field(default_factory=dict)
    """Net spend per other currency, of `foreign_orders` orders."""
    foreign_orders: dict[str, int] = field(default_factory=dict)
    first_order_at: datetime | None = None
    """The earliest placing time among the active orders kept apart."""
    complaints: int = 0
    surveys: int = 0
    nps_answers: int = 0
    promoters: int = 0
    detractors: int = 0
    csat_answers: int = 0
    csat_total: int = 0
    stored: int = 0
    """Documents kept apart, of any kind and state: none means there is nothing to recall."""

    def count_order(self, order: Order, base_currency: str, sign: int) -> None:
        """Add (`sign` +1) or take out (-1) an order's share of the totals."""
        if not order.active:
            return
        self.orders += sign
        if order.currency == base_currency:
            self.base_orders += sign
            self.base_net = _canonical(self.base_net + sign * order.net)
        elif order.currency is not None:
            count = self.foreign_orders.get(order.currency, 0) + sign
            net = _canonical(self.foreign.get(order.currency, Decimal(0)) + sign * order.net)
            if count:
                self.foreign_orders[order.currency], self.foreign[order.currency] = count, net
            else:
                self.foreign_orders.pop(order.currency, None)
                self.foreign.pop(order.currency, None)

    def count_survey(self, survey: Survey, sign: int) -> None:
        self.surveys += sign
        if survey.nps is not None:
            self.nps_answers += sign
            self.promoters += sign * (survey.nps >= 9)
            self.detractors += sign * (survey.nps <= 6)
        if survey.csat is not None:
            self.csat_answers += sign
            self.csat_total += sign * survey.csat


@dataclass(frozen=True)
class FactIds:
    """The facts kept apart that a batch of events refers to (by id), for `recall`."""

    orders: frozenset[str] = frozenset()
    complaints: frozenset[str] = frozenset()
    surveys: frozenset[str] = frozenset()
    cancellations: int = 0
    """Cancellations in the batch: so many held orders may leave, and as many kept apart come
    back; and the first order kept apart may be one of them."""


@dataclass
class Apart:
    """This batch's traffic with the facts kept apart: what was recalled, what to write."""

    orders: dict[str, Order] = field(default_factory=dict)
    """Orders to write apart (new there, or recalled and maybe changed)."""
    complaints: dict[str, datetime] = field(default_factory=dict)
    surveys: dict[str, Survey] = field(default_factory=dict)
    back: list[tuple[str, str]] = field(default_factory=list)
    """(kind, id) kept apart until now and held by the record again: to delete there."""
    recalled: set[tuple[str, str]] = field(default_factory=set)
    recalled_orders: dict[str, Order] = field(default_factory=dict)
    """The orders recalled, as they were stored: their share leaves `Earlier` at the next
    `compact`, which knows the base currency."""
    first_recalled: bool = False
    """The earliest active orders kept apart were recalled: `Earlier.first_order_at` is
    recomputed from those that go apart again."""
