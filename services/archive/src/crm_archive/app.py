"""The one wiring place: `build_app(settings)` -> the ASGI app."""

from datetime import UTC, datetime

from fastapi import FastAPI

from crm_archive.adapters.mongo import MongoCustomerRepository
from crm_archive.entrypoints import kafka
from crm_archive.entrypoints.http import customers_router
from crm_archive.handlers import Clock
from crm_archive.settings import ArchiveSettings
from crm_runtime.http import create_http_app
from crm_runtime.runtime import Runtime


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_app(settings: ArchiveSettings | None = None, *, clock: Clock = _utc_now) -> FastAPI:
    settings = settings or ArchiveSettings()
    runtime = Runtime(settings)
    repository = MongoCustomerRepository(runtime.db, runtime.uow)
    runtime.on_startup(repository.ensure_indexes)
    kafka.subscribe(runtime, repository, clock, settings.base_currency)
    return create_http_app(
        runtime,
        title="CRM archive",
        description="The customer ledger (客户档案): profiles, value, stage.",
        routers=[customers_router(repository, runtime.auth, base_currency=settings.base_currency)],
    )
