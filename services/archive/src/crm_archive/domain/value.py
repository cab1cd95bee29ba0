"""What a customer is worth: value, RFM, NPS and CSAT from the facts the record holds and the
totals of those it keeps apart (`Earlier`). Pure, like `rules.py`."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from crm_archive.domain.apart import Earlier
from crm_archive.domain.facts import CENT, Order, Survey
from crm_archive.domain.rules import ArchiveRules, OrderFact, Rfm, csat, nps, rfm


@dataclass(frozen=True)
class Figures:
    """What every active order adds up to, whatever the clock (`Value` holds them too): kept
    with the record by `Customer.evaluate`, for lists and reports."""

    order_count: int = 0
    net_spent: Decimal = Decimal(0)
    """In the base currency."""
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None


@dataclass
class Value:
    order_count: int
    net_spent: Decimal
    foreign_spent: dict[str, Decimal]
    first_order_at: datetime | None
    last_order_at: datetime | None
    average_order_value: Decimal | None
    rfm: Rfm
    nps: int | None
    csat: Decimal | None
    surveys: int

    @property
    def figures(self) -> Figures:
        return Figures(self.order_count, self.net_spent, self.first_order_at, self.last_order_at)


def value_of(
    active: list[Order],
    answered: Iterable[Survey],
    earlier: Earlier,
    now: datetime,
    rules: ArchiveRules,
) -> Value:
    """`active`: the active orders held in full; `answered`: the surveys held in full."""
    base = [o for o in active if o.currency == rules.base_currency]
    net = sum((o.net for o in base), earlier.base_net)
    foreign: dict[str, Decimal] = dict(earlier.foreign)
    for o in active:
        if o.currency != rules.base_currency and o.currency is not None:
            foreign[o.currency] = foreign.get(o.currency, Decimal(0)) + o.net
    times = [o.placed_at for o in active if o.placed_at is not None]
    firsts = [*times, *([earlier.first_order_at] if earlier.first_order_at else [])]
    base_count = len(base) + earlier.base_orders
    facts = [OrderFact(o.placed_at, o.net) for o in base if o.placed_at is not None]
    surveys = list(answered)
    nps_scores = [s.nps for s in surveys if s.nps is not None]
    csat_scores = [s.csat for s in surveys if s.csat is not None]
    return Value(
        order_count=len(active) + earlier.orders,
        net_spent=net,
        foreign_spent=foreign,
        first_order_at=min(firsts, default=None),
        last_order_at=max(times, default=None),
        average_order_value=(
            (net / base_count).quantize(CENT, rounding=ROUND_HALF_UP) if base_count else None
        ),
        rfm=rfm(facts, now, rules),
        nps=nps(
            nps_scores,
            earlier=(earlier.nps_answers, earlier.promoters, earlier.detractors),
        ),
        csat=csat(csat_scores, earlier=(earlier.csat_answers, earlier.csat_total)),
        surveys=len(surveys) + earlier.surveys,
    )
