"""`GET /customers`: its query parameters (`CustomerQuery`), what they ask for (a
`CustomerFilter` and a `CustomerSort`), and its keyset cursor (the last row's sort value and id).
Bad values are a 422 (or a 400 for a cursor) that says what is wrong."""

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal, Self

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm_archive.domain.rules import Grade, Stage
from crm_archive.domain.search import SearchTextError, parse_search
from crm_archive.ports import After, CustomerFilter, CustomerRow, CustomerSort, SortField
from crm_contracts.members.v1 import CustomerType
from crm_runtime.paging import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor

INVALID_CURSOR = "the cursor is not valid; start again without one"
Money = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=2)]
Sort = Literal["net_spent", "-net_spent", "last_order_at", "-last_order_at", "rfm", "-rfm"]


class CustomerCriteria(BaseModel):
    """Which customers, in which order: the query parameters of `GET /customers` and of its
    export (`GET /customers/export.csv`). Every criterion given must hold."""

    model_config = ConfigDict(extra="forbid")

    type: CustomerType | None = Field(default=None, description="A person or a company.")
    grade: Grade | None = None
    stage: Stage | None = None
    owner: str | None = Field(default=None, max_length=128, description="The account owner.")
    at_risk: bool | None = None
    agreement_customer: bool | None = Field(
        default=None, description="With (true) or without (false) an active agreement."
    )
    q: str | None = Field(
        default=None,
        min_length=2,
        max_length=200,
        description="An e-mail address (it holds `@`), a phone number (digits, with `+ - ( ) .` "
        "or spaces), else a name or part of one: two or more Chinese characters anywhere in "
        "the name, or the beginning (two letters or more) of words of it, case and accents "
        "ignored. Matched through keyed hashes, never plaintext.",
    )
    tag: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default=[], max_length=10, description="Repeat for several: customers with every one."
    )
    city: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Case, spaces and a trailing 市 ignored (杭州市 = 杭州).",
    )
    min_net_spent: Money | None = None
    max_net_spent: Money | None = None
    last_order_after: datetime | None = Field(
        default=None, description="The last order placed at or after (RFC 3339; UTC if no zone)."
    )
    last_order_before: datetime | None = Field(
        default=None, description="The last order placed before (RFC 3339; UTC if no zone)."
    )
    sort: Sort | None = Field(
        default=None, description="By net spend, last order or RFM total; `-` for descending."
    )

    @model_validator(mode="after")
    def ranges_are_ordered(self) -> Self:
        low, high = self.min_net_spent, self.max_net_spent
        if low is not None and high is not None and low > high:
            raise ValueError("min_net_spent must not be above max_net_spent")
        after, before = _utc(self.last_order_after), _utc(self.last_order_before)
        if after is not None and before is not None and after >= before:
            raise ValueError("last_order_after must be before last_order_before")
        return self

    def to_filter(self) -> CustomerFilter:
        """What the parameters ask for (422 when `q` holds nothing searchable)."""
        try:
            search = parse_search(self.q) if self.q is not None else None
        except SearchTextError as exc:
            raise HTTPException(422, str(exc)) from exc
        return CustomerFilter(
            type=self.type,
            grade=self.grade,
            stage=self.stage,
            owner=self.owner,
            at_risk=self.at_risk,
            agreement_customer=self.agreement_customer,
            search=search,
            tags=tuple(dict.fromkeys(self.tag)),
            city=self.city,
            min_net_spent=self.min_net_spent,
            max_net_spent=self.max_net_spent,
            last_order_after=_utc(self.last_order_after),
            last_order_before=_utc(self.last_order_before),
        )

    def to_sort(self) -> CustomerSort:
        if self.sort is None:
            return CustomerSort()
        field: SortField = self.sort.removeprefix("-")  # type: ignore[assignment]
        return CustomerSort(field, descending=self.sort.startswith("-"))


class CustomerQuery(CustomerCriteria):
    """The query parameters of `GET /customers`: the criteria and a page."""

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=1000)


def _utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def _sort_name(sort: CustomerSort) -> str:
    return f"{'-' if sort.descending else ''}{sort.field or 'id'}"


def list_cursor(rows: list[CustomerRow], sort: CustomerSort, limit: int) -> str | None:
    """The next page's cursor, only when this page came back full."""
    if not rows or len(rows) < limit:
        return None
    last = rows[-1]
    position: dict[str, object] = {"id": last.id}
    if sort != CustomerSort():
        value = last.sort_value(sort.field)
        shown = value.isoformat() if isinstance(value, datetime) else value
        position |= {"sort": _sort_name(sort), "v": shown}
    return encode_cursor(position)


def list_after(cursor: str | None, sort: CustomerSort) -> After | None:
    """Where the previous page ended (400 for a cursor that is bad or of another sort)."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    if position.get("sort", "id") != _sort_name(sort):
        raise HTTPException(400, "the cursor belongs to another sort; start again without one")
    last_id, value = position.get("id"), position.get("v")
    if not isinstance(last_id, str):
        raise HTTPException(400, INVALID_CURSOR)
    if value is None or sort.field is None:
        return After(None, last_id)
    try:
        if sort.field == "net_spent" and isinstance(value, str) and Decimal(value).is_finite():
            return After(Decimal(value), last_id)
        if sort.field == "last_order_at" and isinstance(value, str):
            return After(datetime.fromisoformat(value), last_id)
        if sort.field == "rfm" and isinstance(value, int) and not isinstance(value, bool):
            return After(value, last_id)
    except (InvalidOperation, ValueError) as exc:
        raise HTTPException(400, INVALID_CURSOR) from exc
    raise HTTPException(400, INVALID_CURSOR)
