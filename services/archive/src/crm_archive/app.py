"""The one wiring place: `build_app(settings)` -> the ASGI app; `customer_repository` is also
what the rebuild (`rebuild.py`) writes through."""

from datetime import datetime

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from crm_archive import handlers, metrics
from crm_archive.adapters.mongo import MongoCustomerRepository
from crm_archive.entrypoints import kafka
from crm_archive.entrypoints.bulk import bulk_router
from crm_archive.entrypoints.http import customers_router
from crm_archive.entrypoints.staff import staff_router
from crm_archive.settings import ArchiveSettings
from crm_runtime.crypto import CustomerKeys
from crm_runtime.http import create_http_app
from crm_runtime.mongo import Document
from crm_runtime.runtime import Runtime
from crm_runtime.sweeps import Clock, utc_now
from crm_runtime.uow import UnitOfWork


def customer_repository(
    database: AsyncDatabase[Document], uow: UnitOfWork, keys: CustomerKeys
) -> MongoCustomerRepository:
    """The archive's repository on a database (the service's, or a rebuild's)."""
    return MongoCustomerRepository(database, uow, keys)


def build_app(settings: ArchiveSettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or ArchiveSettings()
    rules = settings.rules
    runtime = Runtime(settings, clock)
    repository = customer_repository(runtime.db, runtime.uow, runtime.keys)
    runtime.on_startup(repository.ensure_indexes)
    metrics.install(runtime, repository)
    runtime.subscribe(kafka.SUBSCRIPTION, repository=repository, rules=rules, clock=clock)

    async def review(now: datetime) -> int:
        return await handlers.review(now, repository, rules=rules)

    runtime.every("review", settings.review_interval_s, review)
    return create_http_app(
        runtime,
        title="CRM archive",
        description="The customer ledger (客户档案): profile, timeline, value, grade, stage, risk.",
        routers=[
            bulk_router(repository, runtime.auth, runtime.audit, rules, clock),
            customers_router(repository, runtime.auth, runtime.audit, rules, clock),
            staff_router(repository, runtime.auth, runtime.audit, rules, clock),
        ],
    )
