"""The archive's business metrics: customers by grade and stage, churn risks raised."""

from prometheus_client import Counter, Gauge

from crm_archive.adapters.mongo import MongoCustomerRepository
from crm_contracts.archive.v1 import CUSTOMER_CHURN_RISK_RAISED
from crm_runtime.runtime import Runtime


def install(runtime: Runtime, repository: MongoCustomerRepository) -> None:
    service = runtime.service
    customers = Gauge(
        "crm_customers",
        "Customers by grade and lifecycle stage (from the database: the same on every replica).",
        ["service", "grade", "stage"],
        registry=runtime.registry,
    )
    churn_risks = Counter(
        "crm_churn_risks_raised",
        "Churn early-warnings raised (流失预警).",
        ["service"],
        registry=runtime.registry,
    )
    churn_risks.labels(service)

    async def refresh() -> None:
        counts = await repository.grade_stage_counts()
        customers.clear()
        for (grade, stage), n in counts.items():
            customers.labels(service, grade, stage).set(n)

    runtime.gauges("customers", refresh)
    runtime.on_committed(CUSTOMER_CHURN_RISK_RAISED, lambda _: churn_risks.labels(service).inc())
