"""The one wiring place: `build_app(settings)` -> the ASGI app."""

from datetime import datetime

from fastapi import FastAPI

from crm_relations import handlers, metrics
from crm_relations.adapters.mongo import MongoRelationsRepository
from crm_relations.entrypoints import kafka
from crm_relations.entrypoints.http import agreements_router, tasks_router
from crm_relations.settings import RelationsSettings
from crm_runtime.http import create_http_app
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock, utc_now


def build_app(settings: RelationsSettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or RelationsSettings()
    rules = settings.rules
    runtime = Runtime(settings, clock)
    repository = MongoRelationsRepository(runtime.db, runtime.uow, rules, runtime.keys)
    runtime.on_startup(repository.ensure_indexes)
    metrics.install(runtime, repository)
    runtime.subscribe(kafka.SUBSCRIPTION, repository=repository, rules=rules, clock=clock)

    async def overdue(now: datetime) -> int:
        return await handlers.overdue_sweep(now, repository, rules=rules)

    async def agreements(now: datetime) -> int:
        return await handlers.agreement_sweep(now, repository, rules=rules)

    async def digest(now: datetime) -> int:
        return await handlers.digest_sweep(now, repository, rules=rules)

    runtime.every("overdue", settings.sweep_interval_s, overdue)
    runtime.every("digest", settings.sweep_interval_s, digest)
    runtime.every("agreements", settings.sweep_interval_s, agreements)
    routers = [
        tasks_router(repository, runtime.auth, runtime.audit, rules, clock),
        agreements_router(repository, runtime.auth, runtime.audit, rules, clock),
    ]
    return create_http_app(
        runtime,
        title="CRM relations",
        description="Maintenance plans and follow-up tasks (定期回访), churn recovery calls, "
        "agreement customers (协议客户) and their fulfilment.",
        routers=routers,
    )
