"""The one wiring place: `build_app(settings)` -> the ASGI app."""

from datetime import datetime

from fastapi import FastAPI

from crm_loyalty import handlers, metrics
from crm_loyalty.adapters.mongo import MongoAccountRepository
from crm_loyalty.entrypoints import kafka
from crm_loyalty.entrypoints.http import accounts_router
from crm_loyalty.settings import LoyaltySettings
from crm_runtime.http import create_http_app
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock, utc_now


def build_app(settings: LoyaltySettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or LoyaltySettings()
    rules = settings.rules
    runtime = Runtime(settings, clock)
    repository = MongoAccountRepository(runtime.db, runtime.uow, rules, runtime.keys)
    runtime.on_startup(repository.ensure_indexes)
    metrics.install(runtime, repository)
    runtime.subscribe(kafka.SUBSCRIPTION, repository=repository, rules=rules, clock=clock)

    async def expiry(now: datetime) -> int:
        return await handlers.expiry_sweep(now, repository, rules=rules)

    async def tiers(now: datetime) -> int:
        return await handlers.tier_sweep(now, repository, rules=rules)

    async def birthdays(now: datetime) -> int:
        return await handlers.birthday_sweep(now, repository, rules=rules)

    runtime.every("expiry", settings.sweep_interval_s, expiry)
    runtime.every("tiers", settings.sweep_interval_s, tiers)
    runtime.every("birthdays", settings.sweep_interval_s, birthdays)
    return create_http_app(
        runtime,
        title="CRM loyalty",
        description="Points (积分): an append-only ledger, tiers, redemption, expiry, refunds.",
        routers=[accounts_router(repository, runtime.auth, runtime.audit, rules, clock)],
    )
