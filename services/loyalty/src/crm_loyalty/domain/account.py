"""A customer's points account: its orders, debt and tier, and the ledger entries it writes.

The account decides; its lots and entries (`ledger.py`) hold the points. Policies (README):

- A refund reverses the points of the refunded part (cumulative, rounded so that a full refund
  reverses exactly what was earned); a cancellation reverses all of the order's points. The
  points come off the order's own lot first, then the earliest-expiring other lots; what is still
  missing (points already spent) becomes **debt**: the balance goes negative and later earnings
  repay it first. Points of the order that already expired are not taken a second time.
- A redemption or a negative adjustment never takes more than the balance.
- Tiers follow qualifying points: points earned on orders placed in the rolling window, less their
  reversals — never the spendable balance. Earning can only promote; the daily sweep also demotes.

The account is bounded (ADR 0022): an order that is **settled** — placed more than the window
and `APART_GRACE_DAYS` before the account's latest order, whose lot holds no points (spent,
expired or reversed), and, above standard, whose leaving the window a tier review has passed —
leaves it with its lot (`compact`), to be kept apart by the repository;
a refund or cancellation event that is not yet matched by its order leaves too. A batch that
names such an order brings it back first (`recall`). A bonus lot with no points left is
dropped: nothing reads it again, and the ledger holds its history. What stays is the orders
of the window and the lots that still hold points, however long the customer has bought.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from crm_loyalty.domain.ledger import (
    Entry,
    EntryKind,
    Lot,
    LotKind,
    OrderPoints,
    spend_order,
    take,
    take_back,
)
from crm_loyalty.domain.rules import LoyaltyRules, Tier, tier_rank

APART_GRACE_DAYS = 30
"""How much longer than the qualifying window an order stays in the account: an order event
up to this much older than the account's latest order still finds every order its window
counts."""


class NoAccountError(LookupError):
    """The customer has no loyalty account."""


class IdempotencyKeyReusedError(ValueError):
    """An Idempotency-Key already used for a different request."""


class InsufficientPointsError(Exception):
    """A redemption or negative adjustment larger than the balance."""

    def __init__(self, wanted: int, balance: int) -> None:
        super().__init__(f"{wanted} points asked, the balance is {balance}")
        self.wanted = wanted
        self.balance = balance


@dataclass(frozen=True)
class TierChanged:
    tier: Tier
    previous: Tier
    qualifying_points: int
    at: datetime
    cause: str


@dataclass(frozen=True)
class ExpiringSoon:
    lot_id: str
    points: int
    expires_at: datetime
    at: datetime


DomainEvent = Entry | TierChanged | ExpiringSoon
"""The domain's events: what the account's methods return (as a list; `redeem` and `adjust`
return their one entry), each announced on `loyalty.v1` by the use cases (`handlers.to_message`)."""


@dataclass
class Account:
    customer_id: str
    opened_at: datetime
    enrolled_at: datetime | None = None
    tier: Tier = "standard"
    tier_since: datetime | None = None
    tier_reviewed_at: datetime | None = None
    tier_review_due: datetime | None = None  # a reversal lowered the qualifying points
    lots: list[Lot] = field(default_factory=list)
    orders: dict[str, OrderPoints] = field(default_factory=dict)
    debt: int = 0
    birthday: date | None = None
    birthday_years: list[int] = field(default_factory=list)
    entry_count: int = 0
    orders_apart: int = 0
    """How many of the customer's orders are kept apart (as stored, before this unit of work)."""
    version: int = 0
    settled: dict[str, tuple[OrderPoints, Lot | None]] = field(default_factory=dict)
    """Orders `compact` took out of the account in this unit of work, with their lots: to keep
    apart."""
    recalled: set[str] = field(default_factory=set)
    """The ids of orders brought back from apart in this unit of work (`recall`)."""

    # -- figures ------------------------------------------------------------------------------
    @property
    def balance(self) -> int:
        return sum(lot.remaining for lot in self.lots) - self.debt

    def qualifying_points(self, now: datetime, rules: LoyaltyRules) -> int:
        start = rules.window_start(now)
        return sum(
            o.qualifying
            for o in self.orders.values()
            if o.placed_at is not None and start < o.placed_at <= now
        )

    def expiring(self, now: datetime, rules: LoyaltyRules) -> list[Lot]:
        """Lots with points that expire after `now`, within the notice period."""
        horizon = now + timedelta(days=rules.expiring_notice_days)
        return sorted(
            (lot for lot in self.lots if lot.remaining > 0 and now < lot.expires_at <= horizon),
            key=spend_order,
        )

    def next_expiry_at(self) -> datetime | None:
        return min((lot.expires_at for lot in self.lots if lot.remaining > 0), default=None)

    def next_notice_at(self, rules: LoyaltyRules) -> datetime | None:
        notice = timedelta(days=rules.expiring_notice_days)
        return min(
            (
                lot.expires_at - notice
                for lot in self.lots
                if lot.remaining > 0 and not lot.notified
            ),
            default=None,
        )

    def tier_review_at(self, rules: LoyaltyRules) -> datetime | None:
        """When the qualifying points can next fall below the tier: an order leaves the window
        after the last review, or a reversal happened. None for standard (nothing to demote)."""
        if self.tier == "standard":
            return None
        window = timedelta(days=rules.qualifying_window_days)
        since = self.tier_reviewed_at or self.opened_at
        candidates = [
            o.placed_at + window
            for o in self.orders.values()
            if o.placed_at is not None and o.qualifying > 0 and o.placed_at + window > since
        ]
        if self.tier_review_due is not None:
            candidates.append(self.tier_review_due)
        return min(candidates, default=None)

    # -- bounds -------------------------------------------------------------------------------
    def recall(self, order: OrderPoints, lot: Lot | None) -> None:
        """An order kept apart, with its lot, back in the account: a batch names it."""
        self.orders[order.order_id] = order
        if lot is not None and all(held.lot_id != lot.lot_id for held in self.lots):
            self.lots.append(lot)
        self.recalled.add(order.order_id)

    def compact(self, rules: LoyaltyRules) -> None:
        """Take the settled orders out, with their lots (`settled`), and drop the bonus lots
        that hold no points. Above standard, an order also waits until a tier review has
        passed the moment it left the window: the review that may demote for it needs it. Once
        settled, an order stays settled (the latest order only moves later, a lot never
        regains points, reviews only move later), so any batching leaves the same account."""
        latest = max((o.placed_at for o in self.orders.values() if o.placed_at), default=None)
        window = timedelta(days=rules.qualifying_window_days)
        horizon = latest - window - timedelta(days=APART_GRACE_DAYS) if latest else None
        reviewed = self.tier_reviewed_at or self.opened_at
        order_lots = {lot.order_id: lot for lot in self.lots if lot.kind == "order"}
        for order_id, order in list(self.orders.items()):
            lot = order_lots.get(order_id)
            if lot is not None and lot.remaining > 0:
                continue
            placed = order.placed_at
            if placed is not None and (horizon is None or placed > horizon):
                continue
            if placed is not None and self.tier != "standard" and placed + window > reviewed:
                continue  # its leaving the window is still to be reviewed (a demotion)
            del self.orders[order_id]
            self.settled[order_id] = (order, lot)
        self.lots = [
            lot
            for lot in self.lots
            if lot.remaining > 0 or (lot.kind == "order" and lot.order_id in self.orders)
        ]

    @property
    def apart_after_save(self) -> int:
        """How many orders are kept apart once this unit of work is saved."""
        back = len(self.recalled - set(self.settled))
        return self.orders_apart - back + len(set(self.settled) - self.recalled)

    def saved(self) -> None:
        """This unit of work is stored: the next version, and what it settled is apart."""
        self.version += 1
        self.orders_apart = self.apart_after_save
        self.settled, self.recalled = {}, set()

    # -- inbound facts ------------------------------------------------------------------------
    def enrol(self, at: datetime, rules: LoyaltyRules, birthday: date | None) -> list[DomainEvent]:
        if birthday is not None:
            self.birthday = birthday
        if self.enrolled_at is not None:
            return []
        self.enrolled_at = at
        if rules.welcome_bonus <= 0:
            return []
        return [
            self._credit(
                f"welcome/{self.customer_id}", "bonus", "welcome", rules.welcome_bonus, at, rules
            )
        ]

    def set_birthday(self, birthday: date | None) -> None:
        self.birthday = birthday

    def place_order(
        self,
        order_id: str,
        amount: Decimal,
        currency: str,
        channel: str | None,
        at: datetime,
        rules: LoyaltyRules,
        entry_id: str,
    ) -> list[DomainEvent]:
        known = self.orders.get(order_id)
        if known is not None and known.placed_at is not None:
            return []  # the same order again (another event id): it earned already
        points = rules.order_points(amount, currency, channel, at, self.tier)
        order = OrderPoints(order_id, at, amount, points)
        if known is not None:  # refunded or cancelled before we saw it: earn what is left
            order.refunded, order.cancelled = min(amount, known.refunded), known.cancelled
            order.refunds = known.refunds
            order.reversed = points - order.kept
        self.orders[order_id] = order
        kept = order.points - order.reversed
        changes: list[DomainEvent] = []
        if kept > 0:
            changes.append(
                self._credit(entry_id, "earn", "order", kept, at, rules, order_id=order_id)
            )
        changes.extend(self._review_tier(at, rules, cause=entry_id, promote_only=True))
        return changes

    def refund(
        self,
        order_id: str,
        amount: Decimal,
        at: datetime,
        entry_id: str,
        refund_id: str,
    ) -> list[DomainEvent]:
        """`refund_id` (the event id) makes a refund count once even if delivered again."""
        order = self.orders.get(order_id) or OrderPoints(order_id, None, Decimal(0))
        self.orders[order_id] = order
        if refund_id in order.refunds:
            return []
        order.refunds.append(refund_id)
        if order.placed_at is None:  # before its order: reconciled when the order arrives
            order.refunded += amount
            return []
        order.refunded = min(order.amount, order.refunded + amount)
        return self._reverse(order, "refund", at, entry_id)

    def cancel(self, order_id: str, at: datetime, entry_id: str) -> list[DomainEvent]:
        order = self.orders.get(order_id)
        if order is None or order.placed_at is None:
            stub = order or OrderPoints(order_id, None, Decimal(0))
            stub.cancelled = True
            self.orders[order_id] = stub
            return []
        order.cancelled = True
        return self._reverse(order, "cancellation", at, entry_id)

    # -- actions ------------------------------------------------------------------------------
    def redeem(self, redemption_id: str, points: int, at: datetime) -> Entry:
        """The entry's id derives from `redemption_id` (`redemption_entry_id`): a second
        redemption with the same id is a ledger conflict."""
        entry_id = redemption_entry_id(self.customer_id, redemption_id)
        if points <= 0:
            raise ValueError("a redemption takes a positive number of points")
        if points > self.balance:
            raise InsufficientPointsError(points, self.balance)
        taken = take(self.lots, points)
        return self._entry(entry_id, "redeem", -points, at, lots=taken, redemption_id=redemption_id)

    def adjust(
        self, key: str, points: int, reason: str, at: datetime, rules: LoyaltyRules
    ) -> Entry:
        entry_id = f"adjust/{self.customer_id}/{key}"
        if points > 0:
            return self._credit(entry_id, "adjust", "goodwill", points, at, rules, reason=reason)
        if points == 0:
            raise ValueError("an adjustment changes the balance: points may not be 0")
        if -points > self.balance:
            raise InsufficientPointsError(-points, self.balance)
        return self._entry(
            entry_id, "adjust", points, at, lots=take(self.lots, -points), reason=reason
        )

    # -- time ---------------------------------------------------------------------------------
    def expire(self, now: datetime) -> list[DomainEvent]:
        """Expire every lot due at `now`: one entry per lot."""
        changes: list[DomainEvent] = []
        for lot in sorted(self.lots, key=spend_order):
            if lot.remaining > 0 and lot.expires_at <= now:
                points, lot.expired, lot.remaining = lot.remaining, lot.expired + lot.remaining, 0
                changes.append(
                    self._entry(
                        f"expire/{lot.lot_id}",
                        "expire",
                        -points,
                        lot.expires_at,
                        lots={lot.lot_id: -points},
                        expires_at=lot.expires_at,
                    )
                )
        return changes

    def notify_expiring(self, now: datetime, rules: LoyaltyRules) -> list[DomainEvent]:
        """Once per lot, `expiring_notice_days` ahead of its expiry."""
        notices: list[DomainEvent] = []
        for lot in self.expiring(now, rules):
            if not lot.notified:
                lot.notified = True
                notices.append(ExpiringSoon(lot.lot_id, lot.remaining, lot.expires_at, now))
        return notices

    def celebrate_birthday(
        self, today: date, at: datetime, rules: LoyaltyRules
    ) -> list[DomainEvent]:
        if (
            self.birthday is None
            or rules.birthday_bonus <= 0
            or today.year in self.birthday_years
            or not rules.is_birthday(self.birthday, today)
        ):
            return []
        self.birthday_years.append(today.year)
        entry_id = f"birthday/{self.customer_id}/{today.year}"
        return [self._credit(entry_id, "bonus", "birthday", rules.birthday_bonus, at, rules)]

    def review_tier(self, now: datetime, rules: LoyaltyRules) -> list[DomainEvent]:
        return self._review_tier(now, rules, cause=f"review@{now.isoformat()}", promote_only=False)

    # -- internals ----------------------------------------------------------------------------
    def _review_tier(
        self, now: datetime, rules: LoyaltyRules, *, cause: str, promote_only: bool
    ) -> list[DomainEvent]:
        qualifying = self.qualifying_points(now, rules)
        tier = rules.tier_for(qualifying)
        if not promote_only:
            self.tier_reviewed_at, self.tier_review_due = now, None
        if tier == self.tier or (promote_only and tier_rank(tier) < tier_rank(self.tier)):
            return []
        previous, self.tier, self.tier_since = self.tier, tier, now
        return [TierChanged(tier, previous, qualifying, now, cause)]

    def _reverse(
        self,
        order: OrderPoints,
        reason: Literal["refund", "cancellation"],
        at: datetime,
        entry_id: str,
    ) -> list[DomainEvent]:
        to_reverse = (order.points - order.reversed) - order.kept
        if to_reverse <= 0:
            return []
        order.reversed += to_reverse
        if self.tier != "standard":
            self.tier_review_due = min(at, self.tier_review_due or at)
        effective, taken, missing = take_back(self.lots, order.order_id, to_reverse)
        if effective <= 0:
            return []
        self.debt += missing
        return [
            self._entry(
                entry_id,
                "reverse",
                -effective,
                at,
                lots=taken,
                order_id=order.order_id,
                reason=reason,
            )
        ]

    def _credit(
        self,
        entry_id: str,
        kind: EntryKind,
        lot_kind: LotKind,
        points: int,
        at: datetime,
        rules: LoyaltyRules,
        *,
        order_id: str | None = None,
        reason: str | None = None,
    ) -> Entry:
        """New points: a lot; they repay recorded debt first."""
        repaid = min(self.debt, points)
        self.debt -= repaid
        expires_at = rules.expires_at(at)
        lot = Lot(entry_id, lot_kind, at, expires_at, points, points - repaid, order_id)
        self.lots.append(lot)
        return self._entry(
            entry_id,
            kind,
            points,
            at,
            lots={entry_id: points - repaid} if points - repaid else {},
            order_id=order_id,
            reason=reason or (lot_kind if kind == "bonus" else None),
            expires_at=expires_at,
        )

    def _entry(
        self,
        entry_id: str,
        kind: EntryKind,
        points: int,
        at: datetime,
        *,
        lots: dict[str, int],
        order_id: str | None = None,
        redemption_id: str | None = None,
        reason: str | None = None,
        expires_at: datetime | None = None,
    ) -> Entry:
        self.entry_count += 1
        return Entry(
            entry_id=entry_id,
            customer_id=self.customer_id,
            seq=self.entry_count,
            kind=kind,
            points=points,
            at=at,
            balance=self.balance,
            debt=self.debt,
            lots=lots,
            order_id=order_id,
            redemption_id=redemption_id,
            reason=reason,
            expires_at=expires_at,
        )


def redemption_entry_id(customer_id: str, redemption_id: str) -> str:
    """The ledger entry of a redemption: how a retry with the same Idempotency-Key finds it."""
    return f"redeem/{customer_id}/{redemption_id}"
