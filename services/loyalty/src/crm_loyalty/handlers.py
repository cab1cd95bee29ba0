"""Use cases: inbound events and sweeps -> ledger entries and `loyalty.v1` events (the HTTP
commands, redeem and adjust, are in `commands.py`).

Plain async functions over the `AccountRepository` port (`ports.py`): the unit tests call them
with an in-memory one.
"""

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from crm_contracts import CloudEvent, event_key, new_event
from crm_contracts.loyalty import v1 as loyalty_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.orders import v1 as orders_v1
from crm_contracts.topics import LOYALTY
from crm_loyalty.domain.account import Account, DomainEvent, ExpiringSoon, TierChanged
from crm_loyalty.domain.ledger import Entry
from crm_loyalty.domain.rules import LoyaltyRules
from crm_loyalty.ports import AccountRepository, Changes
from crm_runtime.outbox import OutboundMessage
from crm_runtime.privacy import erasure_confirmation
from crm_runtime.sweeps import Clock, utc_now

SOURCE = "crm/loyalty"
CONSUMED_TYPES = (
    members_v1.CUSTOMER_REGISTERED,
    members_v1.CUSTOMER_PROFILE_UPDATED,
    members_v1.CUSTOMER_ERASURE_REQUESTED,
    *orders_v1.EVENTS,
)
KEPT_AFTER_ERASURE = ("ledger figures", "points balance and lots")
SELF_KEYED = frozenset(orders_v1.EVENTS)
"""Events the inbox does not mark (ADR 0025): an account knows the orders it has counted, by
order id, and each order's refunds, by event (ADR 0022: kept apart, they come back for the
batch that names them). The same order again earns nothing, the same refund or cancellation
takes nothing back twice, whatever the event's id."""


async def apply_events(
    events: Sequence[CloudEvent[Any]],
    repository: AccountRepository,
    *,
    rules: LoyaltyRules,
    clock: Clock = utc_now,
) -> int:
    """Apply a batch in order and persist it in one transaction; returns how many were new."""
    fresh = await repository.unprocessed(events)
    if not fresh:
        return 0
    accounts = await repository.load(
        sorted({event.subject for event in fresh}), orders=named_orders(fresh)
    )
    changes: list[tuple[Account, DomainEvent]] = []
    confirmations: list[OutboundMessage] = []
    for event in fresh:
        account = accounts.get(event.subject)
        if account is None:
            account = accounts[event.subject] = Account(event.subject, event.time)
        for change in apply_event(account, event, rules):
            changes.append((account, _with_source(change, event_key(event))))
        if event.type == members_v1.CUSTOMER_ERASURE_REQUESTED:
            confirmations.append(
                erasure_confirmation("loyalty", event, clock(), KEPT_AFTER_ERASURE)
            )
    await save_changes(
        repository,
        list(accounts.values()),
        changes,
        applied=fresh,
        confirmations=confirmations,
        unmarked={event_key(e) for e in fresh if e.type in SELF_KEYED},
    )
    return len(fresh)


def named_orders(events: Sequence[CloudEvent[Any]]) -> dict[str, set[str]]:
    """The orders the events refer to, by customer: those kept apart come back for the batch
    (a placed order seen before, a refund or cancellation of an old order)."""
    named: dict[str, set[str]] = {}
    for event in events:
        data = event.data
        if isinstance(
            data, orders_v1.OrderPlaced | orders_v1.OrderRefunded | orders_v1.OrderCancelled
        ):
            named.setdefault(event.subject, set()).add(data.order_id)
    return named


def apply_event(account: Account, event: CloudEvent[Any], rules: LoyaltyRules) -> list[DomainEvent]:
    data = event.data
    match data:
        case members_v1.CustomerRegistered():
            return account.enrol(event.time, rules, data.birthday)
        case members_v1.CustomerProfileUpdated():
            if "birthday" in data.model_fields_set:
                account.set_birthday(data.birthday)
            return []
        case members_v1.CustomerErasureRequested():
            account.set_birthday(None)  # the only personal data we hold
            return []
        case orders_v1.OrderPlaced():
            return account.place_order(
                data.order_id,
                data.amount,
                data.currency,
                data.channel,
                event.time,
                rules,
                entry_id=f"{event_key(event)}/earn",
            )
        case orders_v1.OrderRefunded():
            return account.refund(
                data.order_id,
                data.amount,
                event.time,
                entry_id=f"{event_key(event)}/reverse",
                refund_id=event_key(event),
            )
        case orders_v1.OrderCancelled():
            return account.cancel(data.order_id, event.time, entry_id=f"{event_key(event)}/reverse")
        case _:
            raise TypeError(f"loyalty does not apply {event.type}")


# -- sweeps ---------------------------------------------------------------------------------
async def expiry_sweep(now: datetime, repository: AccountRepository, *, rules: LoyaltyRules) -> int:
    """Expire due lots and announce lots expiring within the notice period (once per lot)."""

    def step(account: Account) -> list[DomainEvent]:
        return [*account.expire(now), *account.notify_expiring(now, rules)]

    return await _sweep("expiry", now, repository, step)


async def tier_sweep(now: datetime, repository: AccountRepository, *, rules: LoyaltyRules) -> int:
    """Re-evaluate tiers whose qualifying points may have fallen: this is where demotions happen."""
    return await _sweep("tiers", now, repository, lambda a: a.review_tier(now, rules))


async def birthday_sweep(
    now: datetime, repository: AccountRepository, *, rules: LoyaltyRules
) -> int:
    """The birthday bonus, once a year, on the birthday (UTC date of `now`)."""
    today = now.date()
    return await _sweep(
        "birthdays", now, repository, lambda a: a.celebrate_birthday(today, now, rules)
    )


async def _sweep(
    name: str,
    now: datetime,
    repository: AccountRepository,
    step: Callable[[Account], list[DomainEvent]],
    batch: int = 200,
) -> int:
    changed = 0
    seen: set[str] = set()
    while True:
        due = [i for i in await repository.due(name, now, batch) if i not in seen]
        if not due:
            return changed
        seen.update(due)
        accounts = await repository.load(due)
        changes = [(account, c) for account in accounts.values() for c in step(account)]
        await save_changes(repository, list(accounts.values()), changes, applied=[])
        changed += len({a.customer_id for a, _ in changes})


async def save_changes(
    repository: AccountRepository,
    accounts: Sequence[Account],
    changes: Sequence[tuple[Account, DomainEvent]],
    applied: Sequence[CloudEvent[Any]],
    confirmations: Sequence[OutboundMessage] = (),
    unmarked: set[str] | None = None,
) -> None:
    """Save the accounts with what changed them: the entries, the events announcing each change,
    and `confirmations` of erasure, whose customers are erased in the same write."""
    await repository.save(
        Changes(
            accounts=list(accounts),
            entries=[c for _, c in changes if isinstance(c, Entry)],
            applied=list(applied),
            unmarked=unmarked or set(),
            outbound=[*(to_message(a, c) for a, c in changes), *confirmations],
            erased=[message.event.subject for message in confirmations],
        )
    )


def _with_source(change: DomainEvent, event_id: str) -> DomainEvent:
    if isinstance(change, Entry):
        return dataclasses.replace(change, source_event_id=event_id)
    return change


# -- outbound -------------------------------------------------------------------------------
def change_id(change: DomainEvent) -> str:
    """A stable id per change: the same change can never be announced under two ids."""
    match change:
        case Entry():
            return change.entry_id
        case ExpiringSoon():
            return f"expiring/{change.lot_id}"
        case TierChanged():
            return f"tier/{change.cause}/{change.tier}"


def to_message(account: Account, change: DomainEvent) -> OutboundMessage:
    event_type, data, at = _contract(change)
    event = new_event(
        event_type,
        source=SOURCE,
        subject=account.customer_id,
        data=data,
        id=str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"loyalty/{account.customer_id}/{change_id(change)}")
        ),
        time=at,
    )
    return OutboundMessage(LOYALTY.name, event)


def _contract(change: DomainEvent) -> tuple[str, Any, datetime]:
    match change:
        case TierChanged():
            return (
                loyalty_v1.TIER_CHANGED,
                loyalty_v1.TierChanged(
                    tier=change.tier,
                    previous_tier=change.previous,
                    qualifying_points=max(0, change.qualifying_points),
                ),
                change.at,
            )
        case ExpiringSoon():
            return (
                loyalty_v1.POINTS_EXPIRING_SOON,
                loyalty_v1.PointsExpiringSoon(points=change.points, expires_at=change.expires_at),
                change.at,
            )
        case Entry(kind="earn" | "bonus"):
            reason = "order" if change.kind == "earn" else (change.reason or "welcome")
            return (
                loyalty_v1.POINTS_EARNED,
                loyalty_v1.PointsEarned(
                    points=change.points,
                    reason=reason,
                    order_id=change.order_id,
                    expires_at=change.expires_at,
                    balance=change.balance,
                ),
                change.at,
            )
        case Entry(kind="redeem"):
            return (
                loyalty_v1.POINTS_REDEEMED,
                loyalty_v1.PointsRedeemed(
                    points=-change.points,
                    redemption_id=change.redemption_id or "",
                    balance=change.balance,
                ),
                change.at,
            )
        case Entry(kind="reverse"):
            return (
                loyalty_v1.POINTS_REVERSED,
                loyalty_v1.PointsReversed(
                    points=-change.points,
                    order_id=change.order_id or "",
                    reason="cancellation" if change.reason == "cancellation" else "refund",
                    balance=change.balance,
                ),
                change.at,
            )
        case Entry(kind="expire"):
            return (
                loyalty_v1.POINTS_EXPIRED,
                loyalty_v1.PointsExpired(points=-change.points, balance=change.balance),
                change.at,
            )
        case Entry():
            return (
                loyalty_v1.POINTS_ADJUSTED,
                loyalty_v1.PointsAdjusted(
                    points=change.points,
                    # The staff's text may name the customer: it stays in the ledger, sealed.
                    reason="goodwill" if change.points > 0 else "correction",
                    balance=change.balance,
                ),
                change.at,
            )
