"""Where an account's points sit and the record of every movement (ADR 0004): lots, the points
of each order, and ledger entries.

Earned points form a **lot** that expires `lot_lifetime_months` later; spending takes the lots
with the earliest expiry first. An order's points (`OrderPoints`) remember what it earned and
what its refunds and cancellation took back. Every change of points is an **entry**, append-only
in the ledger; an account's balance is the sum of its entries, and equals its lots' remaining
points minus its recorded debt. Pure code: the account (`account.py`) decides; these functions
move the points between lots.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from crm_loyalty.domain.rules import floor_points

EntryKind = Literal["earn", "bonus", "redeem", "reverse", "expire", "adjust"]
LotKind = Literal["order", "welcome", "birthday", "goodwill"]


STAFF_TEXT_KINDS = frozenset({"adjust"})
"""Entries whose reason is free text typed by staff (sealed at rest; reading it is audited).
Other reasons are fixed words."""


@dataclass
class Lot:
    lot_id: str
    kind: LotKind
    earned_at: datetime
    expires_at: datetime
    points: int
    remaining: int
    order_id: str | None = None
    expired: int = 0
    reversed: int = 0
    notified: bool = False


@dataclass
class OrderPoints:
    order_id: str
    placed_at: datetime | None  # None: a refund or cancellation arrived before the order
    amount: Decimal
    points: int = 0
    refunded: Decimal = Decimal(0)
    reversed: int = 0
    cancelled: bool = False
    refunds: list[str] = field(default_factory=list)  # applied refund ids: each counts once

    @property
    def qualifying(self) -> int:
        return self.points - self.reversed

    @property
    def kept(self) -> int:
        """Points the order keeps after its refunds: rounded down, so a full refund keeps 0."""
        if self.cancelled or self.amount <= 0:
            return 0
        share = (self.amount - self.refunded) / self.amount
        return max(0, floor_points(self.points * share))


@dataclass(frozen=True)
class Entry:
    """One ledger line. `points` is signed; `balance` is the account balance after it."""

    entry_id: str
    customer_id: str
    seq: int
    kind: EntryKind
    points: int
    at: datetime
    balance: int
    debt: int
    lots: dict[str, int] = field(default_factory=dict)
    order_id: str | None = None
    redemption_id: str | None = None
    reason: str | None = None
    expires_at: datetime | None = None
    source_event_id: str | None = None


def spend_order(lot: Lot) -> tuple[datetime, datetime, str]:
    """The order lots are spent (and expired) in: earliest expiry first."""
    return (lot.expires_at, lot.earned_at, lot.lot_id)


def take(lots: list[Lot], points: int) -> dict[str, int]:
    """Take `points` from `lots`, earliest expiry first: {lot id: -points taken}."""
    taken: dict[str, int] = {}
    for lot in sorted(lots, key=spend_order):
        if points <= 0:
            break
        part = min(points, lot.remaining)
        if part > 0:
            lot.remaining -= part
            taken[lot.lot_id] = -part
            points -= part
    if points > 0:
        raise AssertionError("took more points than the lots hold")
    return taken


def take_back(lots: list[Lot], order_id: str, points: int) -> tuple[int, dict[str, int], int]:
    """Reverse up to `points` of an order's points: off the order's own lot first, then the
    earliest-expiring other lots. Points of the order that already expired left the balance
    once and are not taken again. Returns (points reversed, {lot id: -points taken}, points
    still missing: spent already, they become debt)."""
    lot = next((lot for lot in lots if lot.kind == "order" and lot.order_id == order_id), None)
    if lot is None:
        return 0, {}, 0
    effective = min(points, lot.points - lot.expired - lot.reversed)
    if effective <= 0:
        return 0, {}, 0
    lot.reversed += effective
    from_lot = min(effective, lot.remaining)
    lot.remaining -= from_lot
    taken = {lot.lot_id: -from_lot} if from_lot else {}
    missing = effective - from_lot
    from_others = min(missing, sum(other.remaining for other in lots))
    for lot_id, delta in take(lots, from_others).items():
        taken[lot_id] = taken.get(lot_id, 0) + delta
    return effective, taken, missing - from_others
