"""Notify's business metrics: notifications by channel and outcome, and what waits to be sent."""

from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from crm_contracts import CloudEvent
from crm_contracts.notify.v1 import (
    NOTIFICATION_CANCELLED,
    NOTIFICATION_FAILED,
    NOTIFICATION_SENT,
    NOTIFICATION_SUPPRESSED,
)
from crm_notify.adapters.mongo import MongoNotifyRepository
from crm_notify.domain.staff import NO_STAFF_ADDRESS
from crm_runtime.metrics import event_field
from crm_runtime.runtime import Runtime

CHANNELS = ("email", "sms", "webhook")
OUTCOMES = {
    NOTIFICATION_SENT: "sent",
    NOTIFICATION_FAILED: "failed",
    NOTIFICATION_SUPPRESSED: "suppressed",
    NOTIFICATION_CANCELLED: "cancelled",
}
WAITING = ("queued", "deferred", "sending")
STAFF_TEMPLATES = (
    "task_digest",
    "task_escalated",
    "agreement_at_risk",
    "agreement_period_closed",
    "agreement_renewal_due",
)


def install(runtime: Runtime, repository: MongoNotifyRepository) -> None:
    service = runtime.service
    notifications = Counter(
        "crm_notifications",
        "Notifications finished, by channel and status (sent, failed: gave up after retries; "
        "suppressed: no consent, opted out, capped; cancelled: consent withdrawn or opted out "
        "after the decision, before the send).",
        ["service", "channel", "status"],
        registry=runtime.registry,
    )
    waiting = Gauge(
        "crm_notifications_waiting",
        "Notifications not sent yet, by channel and status (queued, deferred: quiet hours, a "
        "retry later, or channel none: awaiting the customer's registration; sending: claimed "
        "by a delivery run), from the database.",
        ["service", "channel", "status"],
        registry=runtime.registry,
    )
    unaddressed = Counter(
        "crm_staff_messages_unaddressed",
        "Messages for a person of ours (task digests, escalations, agreement alerts) not sent: "
        "no e-mail address for them in CRM_NOTIFY_STAFF. By template.",
        ["service", "template"],
        registry=runtime.registry,
    )
    for channel in CHANNELS:
        for status in OUTCOMES.values():
            notifications.labels(service, channel, status)
    for template in STAFF_TEMPLATES:
        unaddressed.labels(service, template)

    def count_unaddressed(event: CloudEvent[Any]) -> None:
        if str(event_field(event, "reason", "")).startswith(NO_STAFF_ADDRESS):
            unaddressed.labels(service, str(event_field(event, "template", ""))).inc()

    def count(status: str) -> Callable[[CloudEvent[Any]], None]:
        def increment(event: CloudEvent[Any]) -> None:
            channel = str(event_field(event, "channel", None) or "none")
            notifications.labels(service, channel, status).inc()

        return increment

    async def refresh() -> None:
        counts = await repository.waiting_by_channel(WAITING)
        waiting.clear()
        every = {(channel, status) for channel in CHANNELS for status in WAITING}
        for channel, status in every | counts.keys():
            waiting.labels(service, channel, status).set(counts.get((channel, status), 0))

    runtime.gauges("notifications", refresh)
    for event_type, status in OUTCOMES.items():
        runtime.on_committed(event_type, count(status))
    runtime.on_committed(NOTIFICATION_SUPPRESSED, count_unaddressed)
