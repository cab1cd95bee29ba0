"""Periodic sweeps (time-based rules) with an injectable clock, safe with several replicas.

A sweep is `async def job(now: datetime) -> int` (how many records it changed). The runtime runs
each sweep every `interval_s`; before a run it takes a lease in the `locks` collection, so with
several replicas one runs a given sweep at a time, and renews it while the run lasts (a run may
take longer than the lease). Jobs must still be idempotent (a lease can lapse mid-run, e.g. when
the database is unreachable for a while): key their effects by record id and rule, like every
other effect.
"""

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crm_runtime.mongo import Document

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
SweepJob = Callable[[datetime], Awaitable[int]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Sweep:
    name: str
    interval_s: float
    job: SweepJob


class Leases:
    """Named, expiring leases in MongoDB: at most one holder per name at a time."""

    def __init__(self, database: AsyncDatabase[Document], owner: str | None = None) -> None:
        self.collection: AsyncCollection[Document] = database["locks"]
        self.owner = owner or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def acquire(self, name: str, ttl_s: float, now: datetime | None = None) -> bool:
        now = now or utc_now()
        try:
            document = await self.collection.find_one_and_update(
                {"_id": name, "$or": [{"until": {"$lte": now}}, {"owner": self.owner}]},
                {"$set": {"owner": self.owner, "until": now + timedelta(seconds=ttl_s)}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return False  # someone else holds it: the upsert collided with their document
        return document is not None and document.get("owner") == self.owner

    async def release(self, name: str) -> None:
        await self.collection.update_one(
            {"_id": name, "owner": self.owner}, {"$set": {"until": utc_now()}}
        )


class SweepRunner:
    def __init__(
        self,
        service: str,
        leases: Leases,
        registry: CollectorRegistry,
        clock: Clock = utc_now,
        *,
        min_lease_s: float = 60.0,
    ) -> None:
        self.service = service
        self.leases = leases
        self.clock = clock
        self.min_lease_s = min_lease_s
        self.sweeps: dict[str, Sweep] = {}
        # The lease keeps other replicas out; this keeps an on-demand run (POST /ops/sweeps)
        # from overlapping the periodic run of the same sweep in this process: it waits.
        self._running: dict[str, asyncio.Lock] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self.runs = Counter(
            "crm_sweep_runs",
            "Sweep runs, by sweep and outcome (ok, failed, skipped: another replica held it).",
            ["service", "sweep", "outcome"],
            registry=registry,
        )
        self.changed = Counter(
            "crm_sweep_changed_records",
            "Records a sweep changed.",
            ["service", "sweep"],
            registry=registry,
        )
        self.last_success = Gauge(
            "crm_sweep_last_success_timestamp_seconds",
            "When a sweep last finished without error (Unix time).",
            ["service", "sweep"],
            registry=registry,
        )

    def add(self, name: str, interval_s: float, job: SweepJob) -> None:
        self.sweeps[name] = Sweep(name, interval_s, job)
        self._running[name] = asyncio.Lock()

    async def run_once(self, name: str, now: datetime | None = None) -> int | None:
        """Run a sweep now if this replica gets the lease; None when another replica holds it."""
        async with self._running[name]:
            return await self._run_once(name, now)

    async def _run_once(self, name: str, now: datetime | None) -> int | None:
        sweep = self.sweeps[name]
        lease = f"sweep:{self.service}:{name}"
        ttl_s = max(self.min_lease_s, sweep.interval_s * 2)
        if not await self.leases.acquire(lease, ttl_s=ttl_s):
            self.runs.labels(self.service, name, "skipped").inc()
            return None
        heartbeat = asyncio.create_task(self._renew(lease, ttl_s), name=f"lease {lease}")
        try:
            changed = await sweep.job(now or self.clock())
        except Exception:
            self.runs.labels(self.service, name, "failed").inc()
            raise
        finally:
            heartbeat.cancel()
            await asyncio.wait({heartbeat})  # its end, without swallowing our own cancellation
            await self.leases.release(lease)
        self.runs.labels(self.service, name, "ok").inc()
        self.changed.labels(self.service, name).inc(changed)
        self.last_success.labels(self.service, name).set_to_current_time()
        return changed

    async def _renew(self, lease: str, ttl_s: float) -> None:
        """Renew the lease every third of its life while the job runs: a run longer than the
        lease keeps other replicas out. A renewal that fails (database down) is retried at the
        next beat; one that finds the lease taken is logged (the job's own claims still hold)."""
        while True:
            await asyncio.sleep(ttl_s / 3)
            try:
                if not await self.leases.acquire(lease, ttl_s=ttl_s):
                    log.warning("sweep lease lost mid-run", extra={"lease": lease})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "sweep lease not renewed", extra={"lease": lease, "error": type(exc).__name__}
                )

    def wake(self, name: str) -> None:
        """Run `name` now rather than at its next interval (work for it was just committed)."""
        self._wakes.setdefault(name, asyncio.Event()).set()

    async def run_forever(self, name: str) -> None:
        interval = self.sweeps[name].interval_s
        woken = self._wakes.setdefault(name, asyncio.Event())
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=interval)
            woken.clear()
            try:
                await self.run_once(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sweep failed", extra={"sweep": name, "error": type(exc).__name__})
