"""What staff write about a customer over HTTP: the contacts they made and internal notes.
Routes translate the request into a command (`commands.py`) or a query (the `CustomerQueries`
port) and the answer into a view (`views.py`)."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response

from crm_archive import commands
from crm_archive.domain.customer import NoCustomerError
from crm_archive.domain.rules import ArchiveRules
from crm_archive.entrypoints.http import CustomerId, Limit, Repository, timeline_after, view_of
from crm_archive.entrypoints.views import (
    ContactRequest,
    CustomerCreate,
    CustomerView,
    NoteRequest,
    NoteView,
    TimelineView,
    note_view,
    timeline_view,
)
from crm_contracts.members import v1 as members_v1
from crm_runtime.audit import PiiAudit
from crm_runtime.auth import Authenticator, Principal
from crm_runtime.http import IdempotencyKey, etag
from crm_runtime.paging import DEFAULT_LIMIT, Page, encode_cursor
from crm_runtime.sweeps import Clock


def staff_router(
    repository: Repository,
    auth: Authenticator,
    audit: PiiAudit,
    rules: ArchiveRules,
    clock: Clock,
) -> APIRouter:
    router = APIRouter(tags=["staff"])
    staff = auth.require("agent", "supervisor")

    def no_customer(customer_id: str) -> HTTPException:
        return HTTPException(404, f"no customer {customer_id!r}")

    @router.post(
        "/customers",
        status_code=201,
        summary="Enter a customer (a person or a company); announced like a registration.",
        responses={
            200: {"description": "A retry with the same Idempotency-Key: the first customer."},
            409: {
                "description": "A customer with this phone or e-mail is on file (`existing`: "
                "their ids; `?allow_duplicate=true` enters this one anyway), or the "
                "Idempotency-Key was used for another customer."
            },
        },
    )
    async def create_customer(
        request: CustomerCreate,
        key: IdempotencyKey,
        response: Response,
        principal: Annotated[Principal, Depends(staff)],
        allow_duplicate: bool = False,
    ) -> CustomerView:
        given = request.model_dump(exclude_unset=True)
        registration = members_v1.CustomerRegistered.model_validate(given)
        command = commands.CreateCustomer(registration, key, principal.user, allow_duplicate)
        try:
            done = await commands.create_customer(command, repository, clock, rules)
        except commands.DuplicateCustomerError as exc:
            raise HTTPException(409, {"message": str(exc), "existing": exc.existing}) from exc
        except commands.IdempotencyKeyReusedError as exc:
            raise HTTPException(409, str(exc)) from exc
        if done.replayed:  # a replay reads the stored profile back
            await audit.record(principal, "POST /customers", [done.customer.id])
        response.status_code = 200 if done.replayed else 201
        response.headers["ETag"] = etag(done.customer.version)
        response.headers["Location"] = f"/customers/{done.customer.id}"
        return await view_of(done.customer, repository, clock, rules)

    @router.post(
        "/customers/{customer_id}/contacts",
        status_code=201,
        summary="Log a contact made by staff (call, e-mail, visit, meeting, WeChat, social).",
        responses={
            200: {"description": "A retry with the same Idempotency-Key: the first result."},
            404: {"description": "No such customer."},
            409: {"description": "The Idempotency-Key was used for another contact."},
        },
    )
    async def log_contact(
        customer_id: CustomerId,
        request: ContactRequest,
        key: IdempotencyKey,
        response: Response,
        principal: Annotated[Principal, Depends(staff)],
    ) -> TimelineView:
        command = commands.LogContact(customer_id, key, **request.model_dump(), by=principal.user)
        try:
            done = await commands.log_contact(command, repository, clock, rules)
        except NoCustomerError as exc:
            raise no_customer(customer_id) from exc
        except commands.IdempotencyKeyReusedError as exc:
            raise HTTPException(409, str(exc)) from exc
        if done.replayed:  # a replay reads the stored summary back
            await audit.record(principal, "POST /customers/{customer_id}/contacts", [customer_id])
        response.status_code = 200 if done.replayed else 201
        response.headers["ETag"] = etag(done.version)
        return timeline_view(done.entry)

    @router.post(
        "/customers/{customer_id}/notes",
        status_code=201,
        summary="Write an internal note about a customer (sealed at rest).",
        responses={
            404: {"description": "No such customer."},
            409: {"description": "The customer was erased."},
        },
    )
    async def add_note(
        customer_id: CustomerId,
        request: NoteRequest,
        principal: Annotated[Principal, Depends(staff)],
    ) -> NoteView:
        command = commands.AddNote(customer_id, request.text, by=principal.user)
        try:
            note = await commands.add_note(command, repository, clock)
        except NoCustomerError as exc:
            raise no_customer(customer_id) from exc
        except commands.CustomerErasedError as exc:
            raise HTTPException(409, f"{exc}: no notes are taken about them") from exc
        return note_view(note)

    @router.get(
        "/customers/{customer_id}/notes",
        summary="A customer's internal notes, newest first, paged by cursor (an audited read).",
        responses={404: {"description": "No such customer."}},
    )
    async def list_notes(
        customer_id: CustomerId,
        principal: Annotated[Principal, Depends(staff)],
        limit: Limit = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[NoteView]:
        if not await repository.exists(customer_id):
            raise no_customer(customer_id)
        notes = await repository.notes_page(customer_id, timeline_after(cursor), limit)
        await audit.record(principal, "GET /customers/{customer_id}/notes", [customer_id])
        items = [note_view(note) for note in notes]
        next_cursor = (
            encode_cursor({"at": items[-1].at.isoformat(), "id": items[-1].note_id})
            if len(items) == limit
            else None
        )
        return Page[NoteView](items=items, next_cursor=next_cursor)

    return router
