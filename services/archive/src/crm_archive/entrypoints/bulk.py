"""Customers in bulk over HTTP: the rows of a spreadsheet in (`POST /customers/import`, what
`crm import customers` sends) and a segment out (`GET /customers/export.csv`). Routes translate
the request into a command (`imports.py`) or a query (`queries.py`) and the answer into a view
(`views.py`). Registered before the per-customer routes, so that `/customers/import` and
`/customers/export.csv` are not read as customer ids."""

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from crm_archive import imports, queries
from crm_archive.domain.rules import ArchiveRules
from crm_archive.entrypoints.finding import CustomerCriteria
from crm_archive.entrypoints.http import Repository
from crm_archive.entrypoints.views import (
    EXPORT_COLUMNS,
    CustomerCreate,
    ImportAnswer,
    ImportRequest,
    ImportRowRequest,
    ImportRowResult,
    export_line,
)
from crm_contracts.members import v1 as members_v1
from crm_runtime.audit import PiiAudit
from crm_runtime.auth import Authenticator, Principal
from crm_runtime.sweeps import Clock

EXPORT_ROUTE = "GET /customers/export.csv"


def read_row(request: ImportRowRequest) -> imports.ImportRow:
    """The row as a registration, or the reason it is not one (every field's problem)."""
    try:
        given = CustomerCreate.model_validate(request.customer)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'row'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
        return imports.ImportRow(request.row, None, "; ".join(problems))
    # A `CustomerCreate` is a registration checked already (the same fields, no extra): taken
    # as it is, not validated a second time (a tenth of the archive's time in an import).
    registration = members_v1.CustomerRegistered.model_construct(
        given.model_fields_set, **dict(given)
    )
    return imports.ImportRow(request.row, registration)


def bulk_router(
    repository: Repository, auth: Authenticator, audit: PiiAudit, rules: ArchiveRules, clock: Clock
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

    @router.get(
        "/customers/export.csv",
        summary="Every customer of a segment (the filters of `GET /customers`) as CSV, streamed.",
        description="Supervisors only. Personal data: each customer in it is recorded as read "
        "by the caller (`pii_reads`) before their line is sent. UTF-8 with a byte-order mark "
        "(Excel shows Chinese correctly); the columns are those `crm import customers` reads "
        "back. Written as it is read, in chunks of 200 customers: any size, bounded memory.",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def export_csv(
        criteria: Annotated[CustomerCriteria, Query()],
        principal: Annotated[Principal, Depends(supervisor)],
    ) -> StreamingResponse:
        filters, sort = criteria.to_filter(), criteria.to_sort()

        async def lines() -> AsyncIterator[bytes]:
            yield "\ufeff".encode() + _csv([list(EXPORT_COLUMNS)])
            async for chunk in queries.segment(filters, sort, repository):
                await audit.record(principal, EXPORT_ROUTE, [row.id for row, _ in chunk])
                yield _csv([export_line(row, customer) for row, customer in chunk])

        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="customers.csv"'},
        )

    return router


def _csv(lines: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(lines)
    return buffer.getvalue().encode()
