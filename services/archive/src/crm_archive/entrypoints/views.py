"""What the archive's routes take and answer: the request and response models (the OpenAPI
document), and how the answers are made from the domain's records and the ports' rows."""

from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm_archive.commands import ContactChannel
from crm_archive.domain.customer import Customer
from crm_archive.domain.facts import Order
from crm_archive.domain.rules import ArchiveRules, ChurnReason, Grade, Stage
from crm_archive.ports import CustomerRow, Note, TimelineEntry
from crm_archive.queries import CustomerDetail, ErasureStatus
from crm_contracts.members import v1 as members_v1
from crm_contracts.members.v1 import CustomerType
from crm_runtime.views import view


class ProfileView(BaseModel):
    type: CustomerType
    name: str | None
    phone: str | None
    email: str | None
    birthday: date | None
    gender: str | None
    city: str | None
    address: str | None
    company: str | None
    job_title: str | None
    source: str | None


class RfmView(BaseModel):
    recency_days: int | None
    frequency: int
    monetary: str
    r: int
    f: int
    m: int
    total: int


class ValueView(BaseModel):
    order_count: int
    net_spent: str
    currency: str
    foreign_spent: dict[str, str]
    first_order_at: datetime | None
    last_order_at: datetime | None
    average_order_value: str | None
    rfm: RfmView
    nps: int | None = Field(description="推荐值: -100..100 over the customer's answers")
    csat: str | None = Field(description="满意度: average CSAT 1-5")
    surveys: int


class ChurnView(BaseModel):
    at_risk: bool
    reasons: list[ChurnReason]
    since: datetime | None


class CategorySpend(BaseModel):
    category: str
    spend: str


class SkuSpend(BaseModel):
    sku: str
    spend: str


class PreferencesView(BaseModel):
    """Product preferences: what the customer spent most on over the last 12 months (orders
    in the base currency, cancelled ones left out; refunds are not split by line)."""

    categories: list[CategorySpend]
    skus: list[SkuSpend]


class CustomerView(BaseModel):
    id: str
    stub: bool
    registered_at: datetime | None
    first_seen_at: datetime
    last_event_at: datetime
    profile: ProfileView
    tags: list[str]
    consents: dict[str, dict[str, bool]]
    account_owner: str | None
    grade: Grade | None
    stage: Stage | None
    value: ValueView
    churn_risk: ChurnView
    contacts: int
    complaints: int
    open_tickets: list[str]
    tickets_resolved: int
    loyalty_tier: str | None
    agreement_customer: bool = Field(
        description="An agreement customer (协议客户): an agreement of theirs is active today."
    )
    agreements: list[str] = Field(
        description="The numbers of their active agreements (relations holds the terms)."
    )
    possible_duplicate_of: str | None
    preferences: PreferencesView
    erased: bool


class CustomerSummary(BaseModel):
    id: str
    grade: Grade | None
    stage: Stage | None
    at_risk: bool
    account_owner: str | None
    order_count: int
    net_spent: str
    last_order_at: datetime | None
    rfm: int | None = Field(
        default=None, description="R + F + M (3-15) as of the record's last evaluation."
    )


class TimelineView(BaseModel):
    event_id: str
    at: datetime
    type: str
    data: dict[str, Any]
    summary: str | None = Field(
        default=None,
        description="A contact's summary (personal data, sealed at rest); null after an erasure.",
    )
    topic: str | None = Field(
        default=None,
        description="A call-center contact's topic as typed (sealed at rest); null after an "
        "erasure.",
    )


TEXT_LIMIT = 10_000
"""Characters of a note or a contact's summary."""
LABEL_LIMIT = 200
"""Characters of a contact's purpose or outcome."""


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be empty or only spaces")
    return value


class ContactRequest(BaseModel):
    """A contact staff made. `purpose` and `outcome` are short labels kept in plain text (no
    personal data there); the `summary` is sealed."""

    model_config = ConfigDict(extra="forbid")

    channel: ContactChannel
    direction: Literal["in", "out"] = "out"
    purpose: str | None = Field(default=None, min_length=1, max_length=LABEL_LIMIT)
    outcome: str | None = Field(default=None, min_length=1, max_length=LABEL_LIMIT)
    summary: str | None = Field(default=None, min_length=1, max_length=TEXT_LIMIT)
    next_contact_on: date | None = None

    _texts = field_validator("purpose", "outcome", "summary")(_not_blank)


class NoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=TEXT_LIMIT, description="Personal data: sealed.")

    _text = field_validator("text")(_not_blank)


class NoteView(BaseModel):
    note_id: str
    at: datetime
    by: str = Field(description="The author's user id.")
    text: str | None = Field(description="Null after the customer's erasure.")


class CustomerCreate(members_v1.CustomerRegistered):
    """A customer staff enter: the fields of a member-system registration. `source` (where
    they registered) is `staff` unless given; `account_owner` is the owner (责任人)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_IMPORT_ROWS = 1000


class ImportRowRequest(BaseModel):
    """A spreadsheet row: its number in the file and the fields of `POST /customers`, read
    one by one (a row that cannot be read is rejected with the reason; the others go in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    row: int = Field(ge=1, description="The row's number in the file, to report against.")
    customer: dict[str, Any] = Field(description="The fields of `POST /customers`.")


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: list[ImportRowRequest] = Field(min_length=1, max_length=MAX_IMPORT_ROWS)


class ImportRowResult(BaseModel):
    row: int
    status: Literal["created", "exists", "valid", "rejected"] = Field(
        description="created; exists (entered by an earlier import of the same row); valid "
        "(`dry_run`: would be created); rejected (see `reason`)."
    )
    id: str | None = Field(default=None, description="The customer's id (not when rejected).")
    reason: str | None = None


class ImportAnswer(BaseModel):
    results: list[ImportRowResult]


class CustomerPatch(members_v1.CustomerProfileUpdated):
    """The fields to change; a field sent as null is cleared (`type` cannot be). `consents`:
    the consents to set, per channel and purpose. `account_owner`: supervisors only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    consents: dict[members_v1.ContactChannel, dict[members_v1.ConsentPurpose, bool]] | None = None

    @field_validator("type")
    @classmethod
    def _a_type(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("a customer is a person or a company: type cannot be null")
        return value


class ServiceErasure(BaseModel):
    confirmed_at: datetime | None = Field(
        description="When the service confirmed (`customer.erasure_completed`); null: pending."
    )


class ErasureView(BaseModel):
    customer_id: str
    requested_at: datetime | None = Field(description="Null while only confirmations arrived.")
    request_event_id: str | None
    services: dict[str, ServiceErasure]
    complete: bool = Field(description="Every service confirmed.")


def customer_view(detail: CustomerDetail, now: datetime, rules: ArchiveRules) -> CustomerView:
    customer = detail.customer
    value = customer.value(now, rules)
    return view(
        CustomerView,
        customer,
        profile=view(ProfileView, customer.profile),
        value=view(
            ValueView,
            value,
            net_spent=format(value.net_spent, "f"),
            currency=rules.base_currency,
            foreign_spent={k: format(v, "f") for k, v in value.foreign_spent.items()},
            average_order_value=_decimal_text(value.average_order_value),
            rfm=view(RfmView, value.rfm, monetary=format(value.rfm.monetary, "f")),
            csat=_decimal_text(value.csat),
        ),
        churn_risk=ChurnView(
            at_risk=bool(customer.churn_reasons),
            reasons=customer.churn_reasons,
            since=customer.churn_risk_since,
        ),
        complaints=customer.complaint_count,
        agreement_customer=bool(customer.agreement_numbers),
        agreements=customer.agreement_numbers,
        possible_duplicate_of=detail.duplicate_of,
        preferences=PreferencesView(
            categories=[
                CategorySpend(category=name, spend=format(spend, "f"))
                for name, spend in detail.preferences.categories
            ],
            skus=[
                SkuSpend(sku=sku, spend=format(spend, "f"))
                for sku, spend in detail.preferences.skus
            ],
        ),
        erased=customer.erased_at is not None,
    )


def _decimal_text(value: Decimal | None) -> str | None:
    return format(value, "f") if value is not None else None


def summary_view(row: CustomerRow) -> CustomerSummary:
    return view(CustomerSummary, row, net_spent=format(row.net_spent, "f"))


def timeline_view(entry: TimelineEntry) -> TimelineView:
    return view(TimelineView, entry)


def note_view(note: Note) -> NoteView:
    return view(NoteView, note)


def erasure_view(status: ErasureStatus) -> ErasureView:
    services = {name: ServiceErasure(confirmed_at=at) for name, at in status.confirmed_at.items()}
    return view(ErasureView, status, services=services)


async def order_items(orders: AsyncIterator[Order]) -> AsyncIterator[dict[str, Any]]:
    """The export's orders, as sent."""
    async for o in orders:
        yield {
            "order_id": o.order_id,
            "placed_at": o.placed_at,
            "amount": format(o.amount, "f"),
            "currency": o.currency,
            "refunded": format(o.refunded, "f"),
            "cancelled": o.cancelled,
        }


async def timeline_items(entries: AsyncIterator[TimelineEntry]) -> AsyncIterator[dict[str, Any]]:
    """The export's timeline, as sent."""
    async for entry in entries:
        yield timeline_view(entry).model_dump(mode="json")


EXPORT_COLUMNS = (
    "id",
    "type",
    "name",
    "phone",
    "email",
    "birthday",
    "gender",
    "city",
    "address",
    "company",
    "job_title",
    "tags",
    "account_owner",
    "grade",
    "stage",
    "at_risk",
    "order_count",
    "net_spent",
    "last_order_at",
    "registered_at",
    "erased",
)
"""The columns of `GET /customers/export.csv` (the import maps the same names back)."""


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(text: str) -> str:
    """Free text as a spreadsheet cell that a spreadsheet will not run as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export_line(row: CustomerRow, customer: Customer) -> list[str]:
    """A customer as a line of the CSV export: an erased customer's personal fields are empty;
    typed free text that looks like a formula is quoted (`cell`)."""
    profile = customer.profile

    def text(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime | date):
            return value.isoformat()
        return str(value)

    return [
        row.id,
        text(profile.type),
        cell(text(profile.name)),
        text(profile.phone),
        text(profile.email),
        text(profile.birthday),
        text(profile.gender),
        cell(text(profile.city)),
        cell(text(profile.address)),
        cell(text(profile.company)),
        cell(text(profile.job_title)),
        cell("、".join(customer.tags)),
        text(row.account_owner),
        text(row.grade),
        text(row.stage),
        "true" if row.at_risk else "false",
        str(row.order_count),
        str(row.net_spent),
        text(row.last_order_at),
        text(customer.registered_at),
        "true" if customer.erased_at is not None else "false",
    ]
