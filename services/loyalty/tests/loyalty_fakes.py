"""An in-memory account repository: the unit tests' stand-in for MongoDB."""

import copy
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from crm_contracts import CloudEvent, event_key
from crm_loyalty.domain.account import Account
from crm_loyalty.domain.ledger import Entry, Lot, OrderPoints
from crm_loyalty.domain.rules import LoyaltyRules
from crm_loyalty.ports import Changes
from crm_runtime.outbox import OutboundMessage


class InMemoryAccounts:
    """`keep_everything`: never keep orders apart (the account as it was before ADR 0022), to
    compare with."""

    def __init__(self, rules: LoyaltyRules | None = None, *, keep_everything: bool = False) -> None:
        self.rules = rules or LoyaltyRules()
        self.keep_everything = keep_everything
        self.accounts: dict[str, Account] = {}
        self.apart: dict[tuple[str, str], tuple[OrderPoints, Lot | None]] = {}
        self.ledger: dict[str, Entry] = {}
        self.processed: set[str] = set()
        self.outbox: list[OutboundMessage] = []
        self.erased: set[str] = set()

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        fresh, seen = [], set(self.processed)
        for event in events:
            if event_key(event) not in seen:
                seen.add(event_key(event))
                fresh.append(event)
        return fresh

    async def load(
        self,
        customer_ids: Sequence[str],
        orders: Mapping[str, Collection[str]] | None = None,
    ) -> dict[str, Account]:
        """As the store does: only what `orders` names comes back from apart."""
        found = {i: copy.deepcopy(self.accounts[i]) for i in customer_ids if i in self.accounts}
        for (customer_id, order_id), kept in self.apart.items():
            account = found.get(customer_id)
            named = (orders or {}).get(customer_id, ())
            if account is not None and order_id in named and order_id not in account.orders:
                account.recall(*copy.deepcopy(kept))
        return found

    async def due(self, sweep: str, now: datetime, limit: int) -> list[str]:
        def is_due(account: Account) -> bool:
            if sweep == "expiry":
                times = [account.next_expiry_at(), account.next_notice_at(self.rules)]
                return any(t is not None and t <= now for t in times)
            if sweep == "tiers":
                review = account.tier_review_at(self.rules)
                return review is not None and review <= now
            birthday: date | None = account.birthday
            return birthday is not None and self.rules.is_birthday(birthday, now.date())

        return sorted(i for i, a in self.accounts.items() if is_due(a))[:limit]

    async def entry(self, entry_id: str) -> Entry | None:
        return self.ledger.get(entry_id)

    async def save(self, changes: Changes) -> None:
        self.erased.update(changes.erased)
        for entry in changes.entries:
            assert entry.entry_id not in self.ledger, f"ledger entry {entry.entry_id} written twice"
        for account in changes.accounts:
            if not self.keep_everything:
                account.compact(self.rules)
            for order_id, kept in account.settled.items():
                self.apart[(account.customer_id, order_id)] = copy.deepcopy(kept)
            for order_id in account.recalled - set(account.settled):
                del self.apart[(account.customer_id, order_id)]
            account.saved()
            self.accounts[account.customer_id] = copy.deepcopy(account)
        self.ledger.update((e.entry_id, e) for e in changes.entries)
        marked = (e for e in changes.applied if event_key(e) not in changes.unmarked)
        self.processed.update(event_key(e) for e in marked)  # ADR 0025
        self.outbox.extend(changes.outbound)

    def sum_of_ledger(self, customer_id: str) -> int:
        return sum(e.points for e in self.ledger.values() if e.customer_id == customer_id)

    def published(self, customer_id: str) -> list[str]:
        return [m.event.type for m in self.outbox if m.event.subject == customer_id]
