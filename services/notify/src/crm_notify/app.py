"""The one wiring place: `build_app(settings)` -> the ASGI app."""

from fastapi import FastAPI

from crm_notify.settings import NotifySettings
from crm_runtime.http import create_http_app
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock, utc_now


def build_app(settings: NotifySettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or NotifySettings()
    runtime = Runtime(settings, clock)
    return create_http_app(
        runtime,
        title="CRM notify",
        description="messages to customers and staff: templates, channels, consent, quiet hours.",
    )
