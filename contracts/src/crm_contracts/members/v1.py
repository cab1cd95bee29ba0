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
CustomerType = Literal["person", "company"]
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
    """A customer registered (with the member system, or entered by staff in the archive: then
    `source` is what staff gave, `staff` by default, and the envelope's source `crm/archive`).
    PII: name, phone, email, birthday, address, company, job title."""

    type: CustomerType = Field(default="person", description="A person or a company.")
    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ()-]{5,20}$")
    email: EmailStr | None = None
    birthday: Birthday | None = None
    gender: Gender | None = None
    city: ShortText | None = None
    address: ShortText | None = None
    company: ShortText | None = None
    job_title: ShortText | None = None
    tags: list[ShortText] = Field(default_factory=list, max_length=50)
    consents: dict[ContactChannel, Consent] = Field(default_factory=dict)
    source: ShortText | None = Field(default=None, description="Where they registered.")
    account_owner: Identifier | None = Field(default=None, description="责任人: staff id.")


class CustomerProfileUpdated(_Payload):
    """Only the fields that changed are present (a field present with null was cleared)."""

    type: CustomerType | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ()-]{5,20}$")
    email: EmailStr | None = None
    birthday: Birthday | None = None
    gender: Gender | None = None
    city: ShortText | None = None
    address: ShortText | None = None
    company: ShortText | None = None
    job_title: ShortText | None = None
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
