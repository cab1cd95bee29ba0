"""The one wiring place: `build_app(settings)` -> the ASGI app."""

from fastapi import FastAPI

from crm_runtime.http import create_http_app
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock, utc_now
from crm_tickets.settings import TicketsSettings


def build_app(settings: TicketsSettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or TicketsSettings()
    runtime = Runtime(settings, clock)
    return create_http_app(
        runtime,
        title="CRM tickets",
        description="complaint handling (投诉管理): tickets, SLA clocks, escalation, satisfaction.",
    )
