"""The bulk entry of customers: a batch of spreadsheet rows (`crm import customers` sends them
to `POST /customers/import`), each a registration, entered as `commands.create_customer` enters
one — evaluated, `customer.created` on the timeline with who, `customer.registered` announced on
`members.v1` — but all of a batch in one transaction, with one query for the records and one for
the duplicates.

A row's customer id is derived from its content, so the same row sent again (a re-run of the
same file, a retried batch) finds its customer and changes nothing (`exists`). A row whose phone
or e-mail is on file already, or is an earlier row's of the same batch, is `rejected` with the
reason; so is a row the route could not read (its `problem`).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from crm_archive.commands import Entry, registered_customer, to_milliseconds
from crm_archive.domain.customer import Customer
from crm_archive.domain.facts import contacts_of
from crm_archive.domain.rules import ArchiveRules
from crm_archive.ports import Changes, CustomerRepository
from crm_contracts.members import v1 as members_v1
from crm_runtime.errors import retry_on_conflict
from crm_runtime.sweeps import Clock

IMPORT_SOURCE = "import"
"""The `source` (where they registered) of an imported customer whose row names none."""
RowStatus = Literal["created", "exists", "valid", "rejected"]


@dataclass(frozen=True)
class ImportRow:
    row: int
    """The row's number in the file, to report against."""
    registration: members_v1.CustomerRegistered | None
    problem: str | None = None
    """Why the row could not be read as a registration (then `registration` is None)."""


@dataclass(frozen=True)
class ImportCustomers:
    rows: list[ImportRow]
    by: str
    """Who imports (the user id), kept on each customer's timeline."""
    dry_run: bool = False
    """Check every row (duplicates too) and enter none: `valid` instead of `created`."""


@dataclass(frozen=True)
class RowResult:
    row: int
    status: RowStatus
    customer_id: str | None = None
    reason: str | None = None


def import_id(registration: members_v1.CustomerRegistered) -> str:
    """The customer id a row's content makes: the same row, the same customer."""
    content = registration.model_dump_json()
    return f"c-{uuid.uuid5(uuid.NAMESPACE_URL, 'crm/archive/import/' + content)}"


@dataclass
class _Candidate:
    row: int
    customer: Customer
    registration: members_v1.CustomerRegistered


async def import_customers(
    command: ImportCustomers, repository: CustomerRepository, clock: Clock, rules: ArchiveRules
) -> list[RowResult]:
    """One result per row, in the rows' order."""

    # Each row's customer id (None for a row that could not be read), made once.
    ids = [None if r.registration is None else import_id(r.registration) for r in command.rows]

    async def attempt() -> list[RowResult]:
        results: dict[int, RowResult] = {}
        on_record = await repository.load(sorted({i for i in ids if i is not None}))
        now = to_milliseconds(clock())
        candidates: list[_Candidate] = []
        seen: set[str] = set()
        for row, customer_id in zip(command.rows, ids, strict=True):
            if row.registration is None or customer_id is None:
                results[row.row] = RowResult(row.row, "rejected", reason=row.problem)
                continue
            if customer_id in on_record or customer_id in seen:
                results[row.row] = RowResult(row.row, "exists", customer_id)
                continue
            seen.add(customer_id)
            registration = row.registration
            if registration.source is None:
                registration = registration.model_copy(update={"source": IMPORT_SOURCE})
            customer = registered_customer(customer_id, registration, now)
            candidates.append(_Candidate(row.row, customer, registration))
        accepted = _without_duplicates(
            candidates, await repository.on_file([c.customer for c in candidates]), results
        )
        if command.dry_run:
            for candidate in accepted:
                results[candidate.row] = RowResult(candidate.row, "valid", candidate.customer.id)
        else:
            await repository.save(_entered(accepted, command.by, now, rules))
            for candidate in accepted:
                results[candidate.row] = RowResult(candidate.row, "created", candidate.customer.id)
        return [results[row.row] for row in command.rows]

    return await retry_on_conflict(attempt)


def _without_duplicates(
    candidates: list[_Candidate], on_file: dict[str, list[str]], results: dict[int, RowResult]
) -> list[_Candidate]:
    """The candidates sharing no phone or e-mail with a customer on file or an earlier row;
    the others rejected into `results` with the reason."""
    accepted: list[_Candidate] = []
    claimed: dict[str, int] = {}
    for candidate in candidates:
        others = on_file.get(candidate.customer.id)
        contacts = contacts_of(candidate.customer.profile)
        earlier = sorted({claimed[c] for c in contacts if c in claimed})
        if others:
            reason = f"duplicate: a customer with this phone or e-mail is on file: {others[0]}"
        elif earlier:
            reason = f"duplicate: the same phone or e-mail as row {earlier[0]}"
        else:
            for contact in contacts:
                claimed[contact] = candidate.row
            accepted.append(candidate)
            continue
        results[candidate.row] = RowResult(candidate.row, "rejected", reason=reason)
    return accepted


def _entered(accepted: list[_Candidate], by: str, now: datetime, rules: ArchiveRules) -> Changes:
    changes = Changes()
    for candidate in accepted:
        entry = Entry(f"import/{candidate.customer.id}", by, imported=True)
        one = entry.changes(candidate.customer, candidate.registration, now, rules)
        changes.customers += one.customers
        changes.timeline += one.timeline
        changes.applied += one.applied
        changes.outbound += one.outbound
    return changes
