"""What staff and integrations ask of loyalty over HTTP: redeem points, adjust a balance. Plain
functions over the `AccountRepository` port of `ports.py` (`redeem(command, repository, clock)`):
unit tests run them on the in-memory fakes.

Both are idempotent by the caller's key: a retry with the same key and request returns the first
result (`replayed`); the same key with another request is refused. A write that lost a race to
the consumer is redone on a fresh read (`retry_on_conflict`).
"""

from dataclasses import dataclass

from crm_loyalty.domain.account import (
    Account,
    DomainEvent,
    IdempotencyKeyReusedError,
    InsufficientPointsError,
    NoAccountError,
    redemption_entry_id,
)
from crm_loyalty.domain.ledger import Entry
from crm_loyalty.domain.rules import LoyaltyRules
from crm_loyalty.handlers import save_changes
from crm_loyalty.ports import AccountRepository
from crm_runtime.errors import retry_on_conflict
from crm_runtime.sweeps import Clock


@dataclass(frozen=True)
class Redeem:
    customer_id: str
    points: int
    key: str
    """The caller's Idempotency-Key: the redemption's id."""


@dataclass(frozen=True)
class Adjust:
    customer_id: str
    points: int
    """Signed: negative deducts."""
    reason: str
    """As typed, with who typed it."""
    key: str


@dataclass(frozen=True)
class Done:
    """A ledger entry a command wrote, or found written by the first call with its key."""

    entry: Entry
    replayed: bool


async def redeem(command: Redeem, repository: AccountRepository, clock: Clock) -> Done:
    """Spend points, earliest-expiring first, never below zero (`InsufficientPointsError`; the
    lots that expired meanwhile are expired all the same)."""

    async def attempt() -> Done:
        account = (await repository.load([command.customer_id])).get(command.customer_id)
        if account is None:
            raise NoAccountError(command.customer_id)
        first = await repository.entry(redemption_entry_id(command.customer_id, command.key))
        if first is not None:
            if -first.points != command.points:
                raise IdempotencyKeyReusedError(
                    f"Idempotency-Key {command.key!r} was used for a redemption of "
                    f"{-first.points} points"
                )
            return Done(first, replayed=True)
        now = clock()
        expired: list[DomainEvent] = list(account.expire(now))  # never spend expired points
        try:
            entry = account.redeem(command.key, command.points, now)
        except InsufficientPointsError:
            if expired:
                await _save(repository, account, expired)
            raise
        await _save(repository, account, [*expired, entry])
        return Done(entry, replayed=False)

    return await retry_on_conflict(attempt)


async def adjust(
    command: Adjust, repository: AccountRepository, clock: Clock, rules: LoyaltyRules
) -> Done:
    """Goodwill points or a correction; an account is opened for a customer without one."""

    async def attempt() -> Done:
        now = clock()
        account = (await repository.load([command.customer_id])).get(
            command.customer_id
        ) or Account(command.customer_id, now)
        existing = await repository.entry(f"adjust/{command.customer_id}/{command.key}")
        if existing is not None:
            if existing.points != command.points:
                raise IdempotencyKeyReusedError(
                    f"Idempotency-Key {command.key!r} was used for another adjustment"
                )
            return Done(existing, replayed=True)
        expired: list[DomainEvent] = list(account.expire(now))
        entry = account.adjust(command.key, command.points, command.reason, now, rules)
        await _save(repository, account, [*expired, entry])
        return Done(entry, replayed=False)

    return await retry_on_conflict(attempt)


async def _save(
    repository: AccountRepository, account: Account, changes: list[DomainEvent]
) -> None:
    await save_changes(repository, [account], [(account, c) for c in changes], applied=[])
