"""`notify.v1`: what happened to each notification, published by the notify service.

`subject` is the customer id (for staff alerts: the customer the alert is about). No message body
or address is published.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_contracts.types import Identifier

NOTIFICATION_SENT = "notification.sent"
NOTIFICATION_FAILED = "notification.failed"
NOTIFICATION_SUPPRESSED = "notification.suppressed"
NOTIFICATION_CANCELLED = "notification.cancelled"

Channel = Literal["email", "sms", "webhook"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    notification_id: Identifier
    template: str
    channel: Channel
    cause_event_id: Identifier


class NotificationSent(_Payload):
    provider: str
    attempts: int = Field(ge=1)


class NotificationFailed(_Payload):
    reason: str = Field(max_length=500)
    attempts: int = Field(ge=1)


class NotificationSuppressed(_Payload):
    reason: str = Field(max_length=500, description="e.g. no_consent, opted_out, daily_cap.")


class NotificationCancelled(_Payload):
    """Decided, then not sent: consent withdrawn or the channel opted out before the send."""

    reason: str = Field(max_length=500, description="e.g. email:no_consent, email:opted_out.")


EVENTS: dict[str, type[BaseModel]] = {
    NOTIFICATION_SENT: NotificationSent,
    NOTIFICATION_FAILED: NotificationFailed,
    NOTIFICATION_SUPPRESSED: NotificationSuppressed,
    NOTIFICATION_CANCELLED: NotificationCancelled,
}
