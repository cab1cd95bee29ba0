"""Loyalty's business metrics: points earned, redeemed, reversed, expired; outstanding liability."""

from typing import Any

from prometheus_client import Counter, Gauge

from crm_contracts import CloudEvent
from crm_contracts.loyalty.v1 import POINTS_EARNED, POINTS_EXPIRED, POINTS_REDEEMED, POINTS_REVERSED
from crm_loyalty.adapters.mongo import MongoAccountRepository
from crm_runtime.metrics import event_field
from crm_runtime.runtime import Runtime

EARN_REASONS = ("order", "welcome", "birthday", "promotion")


def install(runtime: Runtime, repository: MongoAccountRepository) -> None:
    service = runtime.service
    registry = runtime.registry
    earned = Counter(
        "crm_points_earned", "Points credited, by reason.", ["service", "reason"], registry=registry
    )
    redeemed = Counter("crm_points_redeemed", "Points redeemed.", ["service"], registry=registry)
    reversed_ = Counter(
        "crm_points_reversed",
        "Points taken back after refunds and cancellations.",
        ["service"],
        registry=registry,
    )
    expired = Counter("crm_points_expired", "Points expired.", ["service"], registry=registry)
    outstanding = Gauge(
        "crm_points_outstanding",
        "Points held by customers (positive balances): the programme's liability (from the "
        "database: the same on every replica).",
        ["service"],
        registry=registry,
    )
    accounts = Gauge(
        "crm_loyalty_accounts",
        "Loyalty accounts, by tier (from the database).",
        ["service", "tier"],
        registry=registry,
    )
    for reason in EARN_REASONS:
        earned.labels(service, reason)
    for counter in (redeemed, reversed_, expired):
        counter.labels(service)

    def points(event: CloudEvent[Any]) -> int:
        return int(event_field(event, "points", 0) or 0)

    def earn(event: CloudEvent[Any]) -> None:
        earned.labels(service, str(event_field(event, "reason", "order"))).inc(points(event))

    async def refresh() -> None:
        total, tiers = await repository.points_held()
        outstanding.labels(service).set(total)
        accounts.clear()
        for tier, n in tiers.items():
            accounts.labels(service, tier).set(n)

    runtime.gauges("points", refresh)
    runtime.on_committed(POINTS_EARNED, earn)
    runtime.on_committed(POINTS_REDEEMED, lambda e: redeemed.labels(service).inc(points(e)))
    runtime.on_committed(POINTS_REVERSED, lambda e: reversed_.labels(service).inc(points(e)))
    runtime.on_committed(POINTS_EXPIRED, lambda e: expired.labels(service).inc(points(e)))
