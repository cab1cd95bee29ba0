"""`callcenter.v1`: contacts, complaints and survey answers from the call center."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_contracts.types import Identifier, LongText, ShortText

CONTACT_LOGGED = "contact.logged"
COMPLAINT_REPORTED = "complaint.reported"
SURVEY_ANSWERED = "survey.answered"

ContactMedium = Literal["phone", "email", "chat", "wechat", "visit", "sms"]
ComplaintCategory = Literal["product", "delivery", "service", "billing", "other"]
Severity = Literal["low", "medium", "high", "critical"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ContactLogged(_Payload):
    contact_id: Identifier
    agent_id: Identifier
    channel: ContactMedium
    direction: Literal["in", "out"]
    topic: ShortText | None = None
    summary: LongText | None = Field(default=None, description="Free text: may hold PII.")
    duration_s: int | None = Field(default=None, ge=0, le=86_400)
    sentiment: float | None = Field(default=None, ge=-1, le=1)


class ComplaintReported(_Payload):
    complaint_id: Identifier
    channel: ContactMedium
    description: LongText = Field(min_length=1, description="Free text: may hold PII.")
    category: ComplaintCategory | None = None
    severity: Severity | None = None
    order_id: Identifier | None = None
    agent_id: Identifier | None = None


class SurveyAnswered(_Payload):
    survey_id: Identifier
    ticket_id: Identifier | None = None
    csat: int | None = Field(default=None, ge=1, le=5, description="满意度 1-5")
    nps: int | None = Field(default=None, ge=0, le=10, description="推荐值 0-10")
    comment: LongText | None = None


EVENTS: dict[str, type[BaseModel]] = {
    CONTACT_LOGGED: ContactLogged,
    COMPLAINT_REPORTED: ComplaintReported,
    SURVEY_ANSWERED: SurveyAnswered,
}
