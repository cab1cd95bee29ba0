"""`members.v1`: registrations, profile changes, consent and erasure requests."""

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from crm_contracts.types import Identifier, ShortText

CUSTOMER_REGISTERED = "customer.registered"
CUSTOMER_PROFILE_UPDATED = "customer.profile_updated"
CUSTOMER_CONSENT_CHANGED = "customer.consent_changed"
CUSTOMER_ERASURE_REQUESTED = "customer.erasure_requested"

ContactChannel = Literal["email", "sms", "phone", "wechat", "push"]
ConsentPurpose = Literal["transactional", "marketing"]
Gender = Literal["female", "male", "other", "undisclosed"]
Phone = ShortText


def _plausible_birthday(value: date) -> date:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    if not date(1900, 1, 1) <= value <= tomorrow:
        raise ValueError("a birthday must be between 1900-01-01 and today")
    return value


Birthday = Annotated[date, AfterValidator(_plausible_birthday)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Consent(_Payload):
    transactional: bool = True
    marketing: bool = False


class CustomerRegistered(_Payload):
    """A customer registered. PII: name, phone, email, birthday."""

    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ()-]{5,20}$")
    email: EmailStr | None = None
    birthday: Birthday | None = None
    gender: Gender | None = None
    city: ShortText | None = None
    tags: list[ShortText] = Field(default_factory=list, max_length=50)
    consents: dict[ContactChannel, Consent] = Field(default_factory=dict)
    source: ShortText | None = Field(default=None, description="Where they registered.")
    account_owner: Identifier | None = Field(default=None, description="责任人: staff id.")


class CustomerProfileUpdated(_Payload):
    """Only the fields that changed are present."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ()-]{5,20}$")
    email: EmailStr | None = None
    birthday: Birthday | None = None
    gender: Gender | None = None
    city: ShortText | None = None
    tags: list[ShortText] | None = Field(default=None, max_length=50)
    account_owner: Identifier | None = None


class CustomerConsentChanged(_Payload):
    channel: ContactChannel
    purpose: ConsentPurpose
    granted: bool


class CustomerErasureRequested(_Payload):
    """The customer asked to be forgotten (PIPL / GDPR)."""

    reason: ShortText | None = None


EVENTS: dict[str, type[BaseModel]] = {
    CUSTOMER_REGISTERED: CustomerRegistered,
    CUSTOMER_PROFILE_UPDATED: CustomerProfileUpdated,
    CUSTOMER_CONSENT_CHANGED: CustomerConsentChanged,
    CUSTOMER_ERASURE_REQUESTED: CustomerErasureRequested,
}
