"""The confirmation every service publishes once it has carried out an erasure request."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from crm_contracts import CloudEvent, new_event
from crm_contracts.privacy import v1 as privacy_v1
from crm_contracts.topics import PRIVACY
from crm_runtime.outbox import OutboundMessage


def erasure_confirmation(
    service: str, request: CloudEvent[Any], at: datetime, kept: Sequence[str] = ()
) -> OutboundMessage:
    """`customer.erasure_completed` for `request`; its id derives from the request, so a
    redelivered request cannot confirm twice."""
    event = new_event(
        privacy_v1.CUSTOMER_ERASURE_COMPLETED,
        source=f"crm/{service}",
        subject=request.subject,
        data=privacy_v1.CustomerErasureCompleted(
            service=service,
            request_event_id=request.id,
            completed_at=at,
            kept=list(kept),
        ),
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"erasure/{service}/{request.id}")),
        time=at,
    )
    return OutboundMessage(PRIVACY.name, event)
