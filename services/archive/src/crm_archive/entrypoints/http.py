"""The archive's query API (port 8081): what an agent looks at first. Routes translate: the
request into a command (`commands.py`) or a query (`queries.py`, the `CustomerQueries` port),
the answer into a view (`views.py`)."""

from datetime import datetime
from typing import Annotated, Literal, Protocol

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from fastapi.responses import StreamingResponse

from crm_archive import commands, queries
from crm_archive.domain.customer import Customer, NoCustomerError
from crm_archive.domain.rules import ArchiveRules, Grade, Stage
from crm_archive.entrypoints.views import (
    CustomerPatch,
    CustomerSummary,
    CustomerView,
    ErasureView,
    TimelineView,
    customer_view,
    erasure_view,
    order_items,
    summary_view,
    timeline_items,
    timeline_view,
)
from crm_archive.ports import CustomerFilter, CustomerQueries, CustomerRepository
from crm_contracts.members.v1 import CustomerType
from crm_runtime.audit import PiiAudit
from crm_runtime.auth import Authenticator, Principal
from crm_runtime.http import IfMatch, etag, expected_version, or_404
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
from crm_runtime.sweeps import Clock

CustomerId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
INVALID_CURSOR = "the cursor is not valid; start again without one"


class Repository(CustomerRepository, CustomerQueries, Protocol):
    """What the routes need: the commands' repository and the read side."""


def timeline_after(cursor: str | None) -> tuple[datetime, str] | None:
    """(at, event id) of the last entry of the previous page, from its cursor (400 if bad)."""
    position = decode_cursor(cursor)
    if position is None:
        return None
    try:
        return datetime.fromisoformat(position["at"]), str(position["id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HTTPException(400, INVALID_CURSOR) from exc


async def view_of(
    customer: Customer, repository: CustomerQueries, clock: Clock, rules: ArchiveRules
) -> CustomerView:
    """What a route answers about a customer, as of now."""
    now = clock()
    detail = await queries.detail(customer, repository, now, rules.base_currency)
    return customer_view(detail, now, rules)


def customers_router(
    repository: Repository,
    auth: Authenticator,
    audit: PiiAudit,
    rules: ArchiveRules,
    clock: Clock,
) -> APIRouter:
    router = APIRouter(tags=["customers"])
    reader = auth.require("agent", "supervisor", "ops")
    staff = auth.require("agent", "supervisor")

    async def load(customer_id: str) -> Customer:
        return or_404(await repository.get(customer_id), f"no customer {customer_id!r}")

    @router.get(
        "/customers/{customer_id}",
        summary="Profile, value, RFM, grade, stage, churn risk; its version in `ETag`.",
        responses={404: {"description": "No such customer."}},
    )
    async def get_customer(
        customer_id: CustomerId,
        response: Response,
        principal: Annotated[Principal, Depends(reader)],
    ) -> CustomerView:
        customer = await load(customer_id)
        await audit.record(principal, "GET /customers/{customer_id}", [customer.id])
        response.headers["ETag"] = etag(customer.version)
        return await view_of(customer, repository, clock, rules)

    @router.get(
        "/customers/{customer_id}/erasure",
        summary="An erasure request and each service's confirmation (PIPL / GDPR).",
        responses={404: {"description": "No such customer, or no erasure requested."}},
        dependencies=[Depends(reader)],
    )
    async def get_erasure(customer_id: CustomerId) -> ErasureView:
        status = queries.erasure_status(await load(customer_id))
        if status is None:
            raise HTTPException(404, f"no erasure was requested for {customer_id!r}")
        return erasure_view(status)

    @router.get(
        "/customers/{customer_id}/timeline",
        summary="Every interaction, paged by cursor (audited when it shows a contact summary).",
    )
    async def get_timeline(
        customer_id: CustomerId,
        principal: Annotated[Principal, Depends(reader)],
        limit: Limit = DEFAULT_LIMIT,
        cursor: str | None = None,
        order: Literal["newest_first", "oldest_first"] = "newest_first",
    ) -> Page[TimelineView]:
        if not await repository.exists(customer_id):
            raise HTTPException(404, f"no customer {customer_id!r}")
        after = timeline_after(cursor)
        entries = await repository.timeline_page(customer_id, after, limit, order == "newest_first")
        if any(entry.summary is not None for entry in entries):  # personal data: audited
            await audit.record(principal, "GET /customers/{customer_id}/timeline", [customer_id])
        items = [timeline_view(entry) for entry in entries]
        next_cursor = (
            encode_cursor({"at": items[-1].at.isoformat(), "id": items[-1].event_id})
            if len(items) == limit
            else None
        )
        return Page[TimelineView](items=items, next_cursor=next_cursor)

    @router.get(
        "/customers",
        summary="Find customers by type, grade, stage, owner, risk, phone or email.",
        dependencies=[Depends(reader)],
    )
    async def list_customers(
        type: CustomerType | None = None,
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
        filters = CustomerFilter(grade, stage, owner, at_risk, contact=q, type=type)
        rows = await repository.find(filters, after_id(cursor), limit)
        items = [summary_view(row) for row in rows]
        next_cursor = id_cursor(items[-1].id if items else None, len(items), limit)
        return Page[CustomerSummary](items=items, next_cursor=next_cursor)

    @router.get(
        "/segments/summary",
        summary="How many customers in each grade and stage.",
        dependencies=[Depends(reader)],
    )
    async def segments() -> dict[str, dict[str, int]]:
        return await repository.segments()

    @router.patch(
        "/customers/{customer_id}",
        summary="Change profile fields, tags, consents, or the account owner (supervisors).",
        responses={
            400: {"description": "Nothing to change, or an If-Match that names no version."},
            403: {"description": "An agent tried to set the account owner."},
            404: {"description": "No such customer."},
            409: {"description": "The customer was erased: only the owner can be set."},
            412: {"description": "If-Match names an older version: read the record again."},
            428: {"description": "No If-Match header: send the ETag of the record you read."},
        },
    )
    async def patch_customer(
        customer_id: CustomerId,
        patch: CustomerPatch,
        response: Response,
        principal: Annotated[Principal, Depends(staff)],
        if_match: IfMatch = None,
    ) -> CustomerView:
        changes = patch.model_dump(exclude_unset=True)
        if not changes:
            raise HTTPException(400, "nothing to change: send the fields to change")
        if "account_owner" in changes and "supervisor" not in principal.roles:
            raise HTTPException(403, "only a supervisor sets the account owner (责任人)")
        version = expected_version(if_match)
        command = commands.PatchCustomer(customer_id, changes, principal.user, version)
        try:
            customer = await commands.patch_customer(command, repository, clock, rules)
        except NoCustomerError as exc:
            raise HTTPException(404, f"no customer {customer_id!r}") from exc
        except commands.StaleVersionError as exc:
            raise HTTPException(412, str(exc)) from exc
        except commands.CustomerErasedError as exc:
            raise HTTPException(409, f"{exc}: only the account owner can be set") from exc
        await audit.record(principal, "PATCH /customers/{customer_id}", [customer.id])
        response.headers["ETag"] = etag(customer.version)
        return await view_of(customer, repository, clock, rules)

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
        now = clock()
        found = await queries.export(customer, repository, now, rules.base_currency)
        head = {"customer": customer_view(found.detail, now, rules).model_dump(mode="json")}
        parts = {"orders": order_items(found.orders), "timeline": timeline_items(found.timeline)}
        return streamed_json(head, parts)

    return router
