"""One batch, one transaction: the service's writes + processed event ids + outbound events."""

import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession

from crm_contracts import CloudEvent
from crm_runtime.mongo import Document, Inbox, inbox_key, transaction
from crm_runtime.outbox import OutboundMessage, Outbox

log = logging.getLogger(__name__)
Stamp = Callable[[Sequence[CloudEvent[Any]], Sequence[OutboundMessage]], Sequence[OutboundMessage]]
"""(applied, outbound) -> outbound with what the runtime adds (the trace context)."""


class UnitOfWork:
    def __init__(
        self,
        client: AsyncMongoClient[Document],
        inbox: Inbox,
        outbox: Outbox,
        stamp: Stamp | None = None,
    ) -> None:
        self.client = client
        self.inbox = inbox
        self.outbox = outbox
        self.stamp = stamp
        self.observers: list[Callable[[Sequence[OutboundMessage]], None]] = []

    def observe(self, observer: Callable[[Sequence[OutboundMessage]], None]) -> None:
        """Call `observer(outbound)` after each commit with events (the relay's wake-up, business
        metrics): once per committed transaction, so an event applied twice is not counted twice."""
        self.observers.append(observer)

    async def unprocessed(self, events: Sequence[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
        return await self.inbox.unprocessed(events)

    @asynccontextmanager
    async def commit(
        self,
        applied: Sequence[CloudEvent[Any]],
        outbound: Sequence[OutboundMessage],
        *,
        unmarked: Collection[str] = (),
    ) -> AsyncIterator[AsyncClientSession]:
        """Yield a session for the service's own writes; the block's end commits them together
        with the inbox marks for `applied` and the `outbound` events. Any error: nothing is kept.
        HTTP actions use it too, with `applied=[]`. After a commit with events the relay wakes.

        `unmarked`: the inbox keys of applied events that get no mark, because applying them
        again changes nothing (their effects are keyed by what they name, or they changed
        nothing and never can; ADR 0025). They still count as applied for the trace context.
        """
        if self.stamp and outbound:
            outbound = self.stamp(applied, outbound)
        marked = [e for e in applied if inbox_key(e) not in unmarked] if unmarked else applied
        async with transaction(self.client) as session:
            yield session
            await self.inbox.mark(marked, session)
            await self.outbox.add(outbound, session)
        if outbound:
            for observer in self.observers:
                try:
                    observer(outbound)
                except Exception:  # an observer's defect must not undo a committed batch
                    log.exception("commit observer failed")
