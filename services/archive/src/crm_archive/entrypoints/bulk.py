"""Customers in bulk over HTTP: the rows of a spreadsheet in (`POST /customers/import`, what
`crm import customers` sends). Routes translate the request into a command (`imports.py`) and
the answer into a view (`views.py`). Registered before the per-customer routes, so that
`/customers/import` is not read as a customer id."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import ValidationError

from crm_archive import imports
from crm_archive.domain.rules import ArchiveRules
from crm_archive.entrypoints.http import Repository
from crm_archive.entrypoints.views import (
    CustomerCreate,
    ImportAnswer,
    ImportRequest,
    ImportRowRequest,
    ImportRowResult,
)
from crm_contracts.members import v1 as members_v1
from crm_runtime.auth import Authenticator, Principal
from crm_runtime.sweeps import Clock


def read_row(request: ImportRowRequest) -> imports.ImportRow:
    """The row as a registration, or the reason it is not one (every field's problem)."""
    try:
        given = CustomerCreate.model_validate(request.customer).model_dump(exclude_unset=True)
        registration = members_v1.CustomerRegistered.model_validate(given)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'row'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
        return imports.ImportRow(request.row, None, "; ".join(problems))
    return imports.ImportRow(request.row, registration)


def bulk_router(
    repository: Repository, auth: Authenticator, rules: ArchiveRules, clock: Clock
) -> APIRouter:
    router = APIRouter(tags=["bulk"])
    supervisor = auth.require("supervisor")

    @router.post(
        "/customers/import",
        summary="Enter up to 1,000 spreadsheet rows as customers (`crm import customers`).",
        description="Each row is checked on its own: a row that is not a valid customer, or "
        "whose phone or e-mail is on file already (or an earlier row's), is rejected with the "
        "reason and the others go in, in one transaction. A row imported before (the same "
        "content) answers `exists` and changes nothing, so a file can be sent again. "
        "`dry_run=true` checks every row and enters none.",
    )
    async def import_customers(
        request: ImportRequest,
        principal: Annotated[Principal, Depends(supervisor)],
        dry_run: bool = False,
    ) -> ImportAnswer:
        rows = [read_row(row) for row in request.rows]
        command = imports.ImportCustomers(rows, principal.user, dry_run)
        results = await imports.import_customers(command, repository, clock, rules)
        return ImportAnswer(
            results=[
                ImportRowResult(row=r.row, status=r.status, id=r.customer_id, reason=r.reason)
                for r in results
            ]
        )

    return router
