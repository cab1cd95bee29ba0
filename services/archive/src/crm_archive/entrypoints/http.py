"""The archive's query API (port 8081): what an agent looks at first."""

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from crm_archive.adapters.mongo import MongoCustomerRepository
from crm_archive.domain.customer import Customer
from crm_archive.domain.rules import ArchiveRules, ChurnReason, Grade, Stage
from crm_archive.handlers import TimelineEntry, to_messages
from crm_contracts.topics import SERVICES
from crm_runtime.audit import PiiAudit
from crm_runtime.auth import Authenticator, Principal
from crm_runtime.paging import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Page,
    after_id,
    decode_cursor,
    encode_cursor,
    id_cursor,
)
from crm_runtime.streaming import streamed_json

CustomerId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


class ProfileView(BaseModel):
    name: str | None
    phone: str | None
    email: str | None
    birthday: date | None
    gender: str | None
    city: str | None
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
    possible_duplicate_of: str | None
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


class TimelineView(BaseModel):
    event_id: str
    at: datetime
    type: str
    data: dict[str, Any]


class CustomerPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_owner: str | None = Field(default=None, min_length=1, max_length=128)
    tags: list[Annotated[str, Field(max_length=200)]] | None = Field(default=None, max_length=50)


def view(
    customer: Customer, now: datetime, rules: ArchiveRules, duplicate_of: str | None
) -> CustomerView:
    value = customer.value(now, rules)
    p = customer.profile
    return CustomerView(
        id=customer.id,
        stub=customer.stub,
        registered_at=customer.registered_at,
        first_seen_at=customer.first_seen_at,
        last_event_at=customer.last_event_at,
        profile=ProfileView(
            name=p.name,
            phone=p.phone,
            email=p.email,
            birthday=p.birthday,
            gender=p.gender,
            city=p.city,
            source=p.source,
        ),
        tags=customer.tags,
        consents=customer.consents,
        account_owner=customer.account_owner,
        grade=customer.grade,
        stage=customer.stage,
        value=ValueView(
            order_count=value.order_count,
            net_spent=format(value.net_spent, "f"),
            currency=rules.base_currency,
            foreign_spent={k: format(v, "f") for k, v in value.foreign_spent.items()},
            first_order_at=value.first_order_at,
            last_order_at=value.last_order_at,
            average_order_value=(
                format(value.average_order_value, "f")
                if value.average_order_value is not None
                else None
            ),
            rfm=RfmView(
                recency_days=value.rfm.recency_days,
                frequency=value.rfm.frequency,
                monetary=format(value.rfm.monetary, "f"),
                r=value.rfm.r,
                f=value.rfm.f,
                m=value.rfm.m,
                total=value.rfm.total,
            ),
            nps=value.nps,
            csat=format(value.csat, "f") if value.csat is not None else None,
            surveys=value.surveys,
        ),
        churn_risk=ChurnView(
            at_risk=bool(customer.churn_reasons),
            reasons=customer.churn_reasons,
            since=customer.churn_risk_since,
        ),
        contacts=customer.contacts,
        complaints=customer.complaint_count,
        open_tickets=customer.open_tickets,
        tickets_resolved=customer.tickets_resolved,
        loyalty_tier=customer.loyalty_tier,
        possible_duplicate_of=duplicate_of,
        erased=customer.erased_at is not None,
    )


ERASING_SERVICES = SERVICES


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


def customers_router(
    repository: MongoCustomerRepository,
    auth: Authenticator,
    audit: PiiAudit,
    rules: ArchiveRules,
    clock: Callable[[], datetime],
) -> APIRouter:
    router = APIRouter(tags=["customers"])
    reader = auth.require("agent", "supervisor", "ops")
    supervisor = auth.require("supervisor")

    async def load(customer_id: str) -> Customer:
        customer = await repository.get(customer_id)
        if customer is None:
            raise HTTPException(404, f"no customer {customer_id!r}")
        return customer

    async def duplicate_of(customer: Customer) -> str | None:
        """The earliest-registered other customer sharing this one's phone or email, if this one
        registered later (so the original is never flagged as the duplicate)."""
        if customer.registered_at is None:
            return None
        earlier = [
            (doc["registered_at"], doc["_id"])
            for doc in await repository.same_contact(customer)
            if doc.get("registered_at") is not None
            and (doc["registered_at"], doc["_id"]) < (customer.registered_at, customer.id)
        ]
        return min(earlier)[1] if earlier else None

    @router.get(
        "/customers/{customer_id}",
        summary="Profile, value, RFM, grade, stage, churn risk.",
        responses={404: {"description": "No such customer."}},
    )
    async def get_customer(
        customer_id: CustomerId, principal: Annotated[Principal, Depends(reader)]
    ) -> CustomerView:
        customer = await load(customer_id)
        await audit.record(principal, "GET /customers/{customer_id}", [customer.id])
        return view(customer, clock(), rules, await duplicate_of(customer))

    @router.get(
        "/customers/{customer_id}/erasure",
        summary="An erasure request and each service's confirmation (PIPL / GDPR).",
        responses={404: {"description": "No such customer, or no erasure requested."}},
    )
    async def get_erasure(
        customer_id: CustomerId, principal: Annotated[Principal, Depends(reader)]
    ) -> ErasureView:
        customer = await load(customer_id)
        if customer.erased_at is None and not customer.erasure_confirmations:
            raise HTTPException(404, f"no erasure was requested for {customer_id!r}")
        services = {
            name: ServiceErasure(confirmed_at=customer.erasure_confirmations.get(name))
            for name in ERASING_SERVICES
        }
        return ErasureView(
            customer_id=customer.id,
            requested_at=customer.erased_at,
            request_event_id=customer.erasure_request_id,
            services=services,
            complete=all(s.confirmed_at is not None for s in services.values()),
        )

    @router.get("/customers/{customer_id}/timeline", summary="Every interaction, paged by cursor.")
    async def get_timeline(
        customer_id: CustomerId,
        principal: Annotated[Principal, Depends(reader)],
        limit: Limit = DEFAULT_LIMIT,
        cursor: str | None = None,
        order: Literal["newest_first", "oldest_first"] = "newest_first",
    ) -> Page[TimelineView]:
        await load(customer_id)
        position = decode_cursor(cursor)
        after = None
        if position is not None:
            try:
                after = (datetime.fromisoformat(position["at"]), str(position["id"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise HTTPException(
                    400, "the cursor is not valid; start again without one"
                ) from exc
        docs = await repository.timeline_page(customer_id, after, limit, order == "newest_first")
        items = [
            TimelineView(event_id=d["_id"], at=d["at"], type=d["type"], data=d["data"])
            for d in docs
        ]
        next_cursor = (
            encode_cursor({"at": items[-1].at.isoformat(), "id": items[-1].event_id})
            if len(items) == limit
            else None
        )
        return Page[TimelineView](items=items, next_cursor=next_cursor)

    @router.get(
        "/customers", summary="Find customers by grade, stage, owner, risk, phone or email."
    )
    async def list_customers(
        principal: Annotated[Principal, Depends(reader)],
        grade: Grade | None = None,
        stage: Stage | None = None,
        owner: Annotated[str | None, Query(max_length=128)] = None,
        at_risk: bool | None = None,
        q: Annotated[
            str | None, Query(min_length=3, max_length=200, description="phone or email")
        ] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[CustomerSummary]:
        filters: dict[str, Any] = {}
        if grade is not None:
            filters["grade"] = grade
        if stage is not None:
            filters["stage"] = stage
        if owner is not None:
            filters["account_owner"] = owner
        if at_risk is not None:
            filters["at_risk"] = at_risk
        if q is not None:
            filters.update(repository.lookup_filter(q))
        docs = await repository.find(filters, after_id(cursor), limit)
        items = [
            CustomerSummary(
                id=d["_id"],
                grade=d.get("grade"),
                stage=d.get("stage"),
                at_risk=d.get("at_risk", False),
                account_owner=d.get("account_owner"),
                order_count=d.get("order_count", 0),
                net_spent=format(d["net_spent"].to_decimal(), "f"),
                last_order_at=d.get("last_order_at"),
            )
            for d in docs
        ]
        next_cursor = id_cursor(items[-1].id if items else None, len(items), limit)
        return Page[CustomerSummary](items=items, next_cursor=next_cursor)

    @router.get("/segments/summary", summary="How many customers in each grade and stage.")
    async def segments(
        principal: Annotated[Principal, Depends(reader)],
    ) -> dict[str, dict[str, int]]:
        return await repository.counts()

    @router.patch("/customers/{customer_id}", summary="Set the account owner (责任人) or tags.")
    async def patch_customer(
        customer_id: CustomerId,
        patch: CustomerPatch,
        principal: Annotated[Principal, Depends(supervisor)],
    ) -> CustomerView:
        changes = patch.model_dump(exclude_unset=True)
        if not changes:
            raise HTTPException(400, "nothing to change: send account_owner and/or tags")
        customer = await load(customer_id)
        now = clock()
        customer.update_profile(now, changes)
        await audit.record(principal, "PATCH /customers/{customer_id}", [customer.id])
        events = customer.evaluate(now, rules)
        action_id = f"patch-{uuid.uuid4()}"
        entry = TimelineEntry(
            action_id,
            customer.id,
            now,
            "customer.patched",
            {"fields": sorted(changes), "by": principal.token_id},
        )
        await repository.save(
            [customer], [entry], [], to_messages(customer, events, action_id, now)
        )
        return view(customer, now, rules, await duplicate_of(customer))

    @router.get(
        "/customers/{customer_id}/export",
        summary="Everything held about the customer, as JSON (data portability), streamed.",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "`{customer, orders, timeline}`: every order and every timeline "
                "entry, sent in chunks as they are read (any size, in bounded memory).",
                "content": {"application/json": {}},
            },
            404: {"description": "No such customer."},
        },
    )
    async def export(
        customer_id: CustomerId, principal: Annotated[Principal, Depends(reader)]
    ) -> StreamingResponse:
        customer = await load(customer_id)
        await audit.record(principal, "GET /customers/{customer_id}/export", [customer.id])
        head = {
            "customer": view(customer, clock(), rules, await duplicate_of(customer)).model_dump(
                mode="json"
            )
        }

        async def orders() -> AsyncIterator[dict[str, Any]]:
            async for o in repository.orders(customer):
                yield {
                    "order_id": o.order_id,
                    "placed_at": o.placed_at,
                    "amount": format(o.amount, "f"),
                    "currency": o.currency,
                    "refunded": format(o.refunded, "f"),
                    "cancelled": o.cancelled,
                }

        async def timeline() -> AsyncIterator[dict[str, Any]]:
            async for d in repository.timeline_entries(customer.id):
                yield TimelineView(
                    event_id=d["_id"], at=d["at"], type=d["type"], data=d["data"]
                ).model_dump(mode="json")

        return streamed_json(head, {"orders": orders(), "timeline": timeline()})

    return router
