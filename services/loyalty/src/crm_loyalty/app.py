"""The one wiring place: `build_app(settings)` -> the ASGI app."""

from fastapi import FastAPI

from crm_loyalty.settings import LoyaltySettings
from crm_runtime.http import create_http_app
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock, utc_now


def build_app(settings: LoyaltySettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or LoyaltySettings()
    runtime = Runtime(settings, clock)
    return create_http_app(
        runtime,
        title="CRM loyalty",
        description="points (积分): ledger, tiers, redemption, expiry, refunds.",
    )
