"""Redeem and adjust, the HTTP commands, run on the in-memory fakes: idempotent by the caller's
key, never overdrawing, never spending expired points, a reused key refused."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from loyalty_fakes import InMemoryAccounts

from crm_contracts.loyalty import v1 as loyalty_v1
from crm_loyalty import commands
from crm_loyalty.domain.account import (
    Account,
    IdempotencyKeyReusedError,
    InsufficientPointsError,
    NoAccountError,
)
from crm_loyalty.domain.ledger import Entry
from crm_loyalty.domain.rules import LoyaltyRules, add_months
from crm_loyalty.ports import Changes

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RULES = LoyaltyRules()


def clock() -> datetime:
    return NOW


async def with_points(points: int) -> InMemoryAccounts:
    repository = InMemoryAccounts(RULES)
    account = Account("c1", NOW)
    changes = account.place_order(
        "o-1", Decimal(points), "CNY", "web", NOW, RULES, entry_id="o-1/earn"
    )
    entries = [c for c in changes if isinstance(c, Entry)]
    await repository.save(Changes(accounts=[account], entries=entries))
    return repository


async def test_a_redemption_spends_once_and_a_retry_returns_the_first_result() -> None:
    repository = await with_points(500)
    balance = repository.sum_of_ledger("c1")
    first = await commands.redeem(commands.Redeem("c1", 100, "k1"), repository, clock)
    again = await commands.redeem(commands.Redeem("c1", 100, "k1"), repository, clock)
    assert (first.replayed, again.replayed) == (False, True)
    assert again.entry.entry_id == first.entry.entry_id
    assert repository.sum_of_ledger("c1") == balance - 100


async def test_a_redemption_never_overdraws_and_a_reused_key_is_refused() -> None:
    repository = await with_points(500)
    balance = repository.sum_of_ledger("c1")
    with pytest.raises(InsufficientPointsError):
        await commands.redeem(commands.Redeem("c1", balance + 1, "k1"), repository, clock)
    await commands.redeem(commands.Redeem("c1", 10, "k2"), repository, clock)
    with pytest.raises(IdempotencyKeyReusedError):
        await commands.redeem(commands.Redeem("c1", 11, "k2"), repository, clock)
    with pytest.raises(NoAccountError):
        await commands.redeem(commands.Redeem("nobody", 1, "k3"), repository, clock)


async def test_an_adjustment_opens_an_account_and_is_idempotent_by_key() -> None:
    repository = InMemoryAccounts(RULES)
    command = commands.Adjust("c9", 50, "service recovery (by agent-7)", "k1")
    first = await commands.adjust(command, repository, clock, RULES)
    again = await commands.adjust(command, repository, clock, RULES)
    assert (first.replayed, again.replayed, again.entry.points) == (False, True, 50)
    assert repository.sum_of_ledger("c9") == 50
    with pytest.raises(IdempotencyKeyReusedError):
        await commands.adjust(commands.Adjust("c9", 60, "x", "k1"), repository, clock, RULES)
    with pytest.raises(InsufficientPointsError):
        await commands.adjust(commands.Adjust("c9", -51, "x", "k2"), repository, clock, RULES)


async def test_a_redemption_spends_no_expired_points_and_expires_them_even_when_refused() -> None:
    repository = await with_points(500)
    later = add_months(NOW, RULES.lot_lifetime_months) + timedelta(days=1)
    with pytest.raises(InsufficientPointsError):
        await commands.redeem(commands.Redeem("c1", 100, "k1"), repository, lambda: later)
    assert [e.kind for e in repository.ledger.values()] == ["earn", "expire"]
    assert repository.sum_of_ledger("c1") == 0
    assert repository.published("c1") == [loyalty_v1.POINTS_EXPIRED]
