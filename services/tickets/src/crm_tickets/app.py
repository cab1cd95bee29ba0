"""The one wiring place: `build_app(settings)` -> the ASGI app."""

from datetime import datetime

from fastapi import FastAPI

from crm_runtime.http import create_http_app
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock, utc_now
from crm_tickets import handlers, metrics
from crm_tickets.adapters.mongo import MongoTicketRepository
from crm_tickets.entrypoints import kafka
from crm_tickets.entrypoints.http import tickets_router
from crm_tickets.settings import TicketsSettings


def build_app(settings: TicketsSettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or TicketsSettings()
    rules = settings.rules
    runtime = Runtime(settings, clock)
    repository = MongoTicketRepository(runtime.db, runtime.uow, runtime.keys)
    runtime.on_startup(repository.ensure_indexes)
    metrics.install(runtime, repository)
    runtime.subscribe(kafka.SUBSCRIPTION, repository=repository, rules=rules, clock=clock)

    async def sla(now: datetime) -> int:
        return await handlers.sla_sweep(now, repository, rules=rules)

    async def assignment(now: datetime) -> int:
        return await handlers.assignment_sweep(now, repository, rules=rules)

    runtime.every("sla", settings.sla_interval_s, sla)
    runtime.every("assignment", settings.assignment_interval_s, assignment)
    return create_http_app(
        runtime,
        title="CRM tickets",
        description="Complaint handling (投诉管理): tickets, SLA clocks, escalation, satisfaction.",
        routers=[
            tickets_router(
                repository,
                runtime.auth,
                runtime.audit,
                rules,
                clock,
                report_max_days=settings.report_max_days,
            )
        ],
    )
