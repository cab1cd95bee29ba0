"""An in-memory relations repository: the unit tests' stand-in for MongoDB."""

import copy
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from crm_contracts import CloudEvent, event_key
from crm_relations.domain.agreement import Agreement, OrderLine
from crm_relations.domain.customer import Customer
from crm_relations.domain.task import Task
from crm_relations.ports import AgreementFilter, Changes, TaskFilter
from crm_runtime.outbox import OutboundMessage


class InMemoryRelations:
    def __init__(self) -> None:
        self.customers_: dict[str, Customer] = {}
        self.tasks_: dict[str, Task] = {}
        self.agreements_: dict[str, Agreement] = {}
        self.lines: dict[tuple[str, str], OrderLine] = {}
        self.processed: set[str] = set()
        self.outbox: list[OutboundMessage] = []
        self.erased: set[str] = set()
        self.digests: set[tuple[date, str]] = set()
        self.customer_reads: list[list[str]] = []
        """The customer ids of each `customers` call, in order."""

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        fresh, seen = [], set(self.processed)
        for event in events:
            if event_key(event) not in seen:
                seen.add(event_key(event))
                fresh.append(event)
        return fresh

    async def customers(self, customer_ids: Sequence[str]) -> dict[str, Customer]:
        self.customer_reads.append(list(customer_ids))
        return {i: copy.deepcopy(self.customers_[i]) for i in customer_ids if i in self.customers_}

    async def tasks(self, task_ids: Sequence[str]) -> dict[str, Task]:
        return {i: copy.deepcopy(self.tasks_[i]) for i in task_ids if i in self.tasks_}

    async def open_tasks(self, customer_ids: Sequence[str]) -> list[Task]:
        return [
            copy.deepcopy(t)
            for t in self.tasks_.values()
            if t.customer_id in customer_ids and t.is_open
        ]

    async def agreements(self, agreement_ids: Sequence[str]) -> dict[str, Agreement]:
        return {
            i: copy.deepcopy(self.agreements_[i]) for i in agreement_ids if i in self.agreements_
        }

    async def agreements_of(self, customer_ids: Sequence[str]) -> list[Agreement]:
        return [
            copy.deepcopy(a)
            for a in self.agreements_.values()
            if a.customer_id in customer_ids and a.status == "active"
        ]

    async def order_lines(
        self, customer_ids: Sequence[str], order_ids: Sequence[str]
    ) -> list[OrderLine]:
        return [
            copy.deepcopy(line)
            for line in self.lines.values()
            if line.customer_id in customer_ids and line.order_id in order_ids
        ]

    async def tasks_to_notice(self, now: datetime, limit: int) -> list[Task]:
        due = [t for t in self.tasks_.values() if t.is_open and t.overdue_notices < 2]
        return [copy.deepcopy(t) for t in sorted(due, key=lambda t: t.due_at)][:limit]

    async def active_agreements(self, after_id: str | None, limit: int) -> list[Agreement]:
        found = sorted(
            (a for a in self.agreements_.values() if a.status == "active"),
            key=lambda a: a.agreement_id,
        )
        return [copy.deepcopy(a) for a in found if after_id is None or a.agreement_id > after_id][
            :limit
        ]

    async def owners_due(self, until: datetime, now: datetime) -> dict[str, tuple[int, int]]:
        counts: dict[str, tuple[int, int]] = {}
        for t in self.tasks_.values():
            if t.is_open and t.owner is not None and t.due_at <= until:
                total, overdue = counts.get(t.owner, (0, 0))
                counts[t.owner] = (total + 1, overdue + int(t.due_at < now))
        return counts

    async def due_of(self, owner: str, until: datetime, limit: int) -> list[Task]:
        mine = [t for t in self.tasks_.values() if t.owner == owner and t.is_open]
        due = sorted((t for t in mine if t.due_at <= until), key=lambda t: (t.due_at, t.task_id))
        return [copy.deepcopy(t) for t in due[:limit]]

    async def digests_given(self, day: date) -> set[str]:
        return {owner for given, owner in self.digests if given == day}

    async def save(self, changes: Changes) -> None:
        assert not self.digests & set(changes.digests), "a digest given twice"
        self.digests.update(changes.digests)
        for customer in changes.customers:
            self._check(self.customers_.get(customer.customer_id), customer.version)
            customer.version += 1
            self.customers_[customer.customer_id] = copy.deepcopy(customer)
        for task in changes.tasks:
            self._check(self.tasks_.get(task.task_id), task.version)
            task.version += 1
            self.tasks_[task.task_id] = copy.deepcopy(task)
        for agreement in changes.agreements:
            self._check(self.agreements_.get(agreement.agreement_id), agreement.version)
            agreement.version += 1
            self.agreements_[agreement.agreement_id] = copy.deepcopy(agreement)
        for line in changes.order_lines:
            self.lines[(line.agreement_id, line.order_id)] = copy.deepcopy(line)
        self.erased.update(changes.erased)
        for task in self.tasks_.values():
            if task.customer_id in self.erased:
                task.summary = None
        marked = (e for e in changes.applied if event_key(e) not in changes.unmarked)
        self.processed.update(event_key(e) for e in marked)  # ADR 0025
        self.outbox.extend(changes.outbound)

    @staticmethod
    def _check(stored: Customer | Task | Agreement | None, version: int) -> None:
        assert (stored.version if stored else 0) == version, "a lost update"

    # -- the read side (only what the unit tests use) ---------------------------------------
    async def task_page(
        self, filters: TaskFilter, after: tuple[datetime, str] | None, limit: int
    ) -> list[Task]:
        raise NotImplementedError

    async def agreement_page(
        self, filters: AgreementFilter, after: str | None, limit: int
    ) -> list[Agreement]:
        raise NotImplementedError

    async def follow_up_report(self, now: datetime, since: date, until: date) -> dict[str, Any]:
        raise NotImplementedError

    # -- helpers for the tests ----------------------------------------------------------------
    def published(self, event_type: str | None = None) -> list[CloudEvent[Any]]:
        return [m.event for m in self.outbox if event_type in (None, m.event.type)]

    def open_of(self, customer_id: str) -> list[Task]:
        return [t for t in self.tasks_.values() if t.customer_id == customer_id and t.is_open]
