"""Customers in bulk (issue 17: `crm import customers`), the command and the route's row reading
on the in-memory fakes: each row goes in on its own merits — a bad row, a phone on file, a phone
an earlier row of the batch has are rejected with the reason and the rest entered; the same rows
again change nothing; a dry run enters nothing."""

from decimal import Decimal
from typing import Any

import pytest
from archive_fakes import InMemoryCustomers
from test_archive_entry import registration
from test_archive_orders import RULES, T0, Clock

from crm_archive import imports
from crm_archive.entrypoints.bulk import read_row
from crm_archive.entrypoints.views import (
    EXPORT_COLUMNS,
    CustomerCreate,
    ImportRowRequest,
    export_line,
)
from crm_archive.ports import CustomerRow
from crm_contracts.members.v1 import CustomerRegistered
from crm_contracts.topics import MEMBERS

pytestmark = pytest.mark.unit
SUPERVISOR = "sup-01"


def row(number: int, **fields: Any) -> imports.ImportRow:
    given = {"name": f"客户{number}", "phone": f"1380000{number:04d}", **fields}
    return read_row(ImportRowRequest(row=number, customer=given))


async def run(
    repo: InMemoryCustomers, rows: list[imports.ImportRow], dry_run: bool = False
) -> list[imports.RowResult]:
    command = imports.ImportCustomers(rows, SUPERVISOR, dry_run)
    return await imports.import_customers(command, repo, Clock(T0), RULES)


async def test_good_rows_go_in_and_bad_ones_are_rejected_with_their_reason() -> None:
    repo = InMemoryCustomers()
    results = await run(
        repo,
        [row(2), row(3, email="not-an-address"), row(4), row(5, phone="1380000 0004"), row(6)],
    )
    assert [r.status for r in results] == ["created", "rejected", "created", "rejected", "created"]
    assert results[1].reason is not None
    assert results[1].reason.startswith("email:")
    assert results[3].reason == "duplicate: the same phone or e-mail as row 4"
    created = [str(r.customer_id) for r in results if r.status == "created"]
    assert sorted(created) == sorted(c for c in repo.customers)
    entry = next(e for e in repo.timeline if e.customer_id == created[0])
    assert (entry.type, entry.data["by"], entry.data["imported"]) == (
        "customer.created",
        SUPERVISOR,
        True,
    )
    announced = [str(m.event.subject) for m in repo.outbox if m.topic == MEMBERS.name]
    assert sorted(announced) == sorted(created)


async def test_the_same_rows_again_change_nothing() -> None:
    repo = InMemoryCustomers()
    rows = [row(2), row(3), row(4, name="")]
    first = await run(repo, rows)
    versions = {i: c.version for i, c in repo.customers.items()}
    outbox = len(repo.outbox)
    again = await run(repo, rows)
    assert [r.status for r in again] == ["exists", "exists", "rejected"]
    assert [r.customer_id for r in again[:2]] == [r.customer_id for r in first[:2]]
    assert {i: c.version for i, c in repo.customers.items()} == versions
    assert len(repo.outbox) == outbox


async def test_a_phone_on_file_is_a_duplicate_naming_the_customer() -> None:
    repo = InMemoryCustomers()
    [first] = await run(repo, [row(2)])
    [second] = await run(repo, [row(9, phone="+86 138 0000 0002", name="别名")])
    assert second.status == "rejected"
    assert (
        second.reason
        == f"duplicate: a customer with this phone or e-mail is on file: {first.customer_id}"
    )


async def test_a_dry_run_checks_every_row_and_enters_none() -> None:
    repo = InMemoryCustomers()
    results = await run(repo, [row(2), row(3, phone="138-0000-0002")], dry_run=True)
    assert [r.status for r in results] == ["valid", "rejected"]
    assert repo.customers == {}
    assert repo.outbox == []


def test_a_row_with_unknown_fields_or_odd_values_says_which() -> None:
    read = read_row(ImportRowRequest(row=7, customer={"name": "A", "shoe_size": 42, "gender": "x"}))
    assert read.registration is None
    assert read.problem is not None
    assert "shoe_size" in read.problem
    assert "gender" in read.problem


def test_a_row_reads_as_the_registration_post_customers_takes() -> None:
    given = registration().model_dump(mode="json", exclude_unset=True)
    read = read_row(ImportRowRequest(row=2, customer=given))
    assert read.registration == registration()


def test_a_row_read_once_is_the_registration_validated_twice_so_old_imports_keep_their_ids() -> (
    None
):
    """The route validates a row once (as `CustomerCreate`); the registration, its JSON and so
    the customer id it makes are those of the earlier double validation: a file imported before
    still answers `exists` on a re-run."""
    given = {
        "name": "王伟",
        "phone": "+86 138-0000-0001",
        "email": "Wang.Wei@Example.COM",
        "birthday": "1990-01-02",
        "gender": "female",
        "type": "company",
        "city": "上海",
        "address": "南京路 1 号",
        "company": "上海贸易有限公司",
        "job_title": "采购经理",
        "tags": ["导入", "华东"],
        "consents": {"email": {"marketing": True}},
        "account_owner": "agent-07",
    }
    for customer in (given, {"name": "李"}, {"name": "A", "email": "a@b.cn", "tags": []}):
        read = read_row(ImportRowRequest(row=2, customer=customer)).registration
        checked = CustomerCreate.model_validate(customer).model_dump(exclude_unset=True)
        twice = CustomerRegistered.model_validate(checked)
        assert read is not None
        assert type(read) is CustomerRegistered
        assert read == twice
        assert read.model_fields_set == twice.model_fields_set
        assert read.model_dump_json() == twice.model_dump_json()
        assert imports.import_id(read) == imports.import_id(twice)
    pinned = read_row(ImportRowRequest(row=2, customer=given)).registration
    assert pinned is not None
    assert imports.import_id(pinned) == "c-dd495214-ab2e-5b0e-8111-116862fb9ffc"


async def test_an_export_line_quotes_formulas_and_is_empty_of_an_erased_customers_data() -> None:
    repo = InMemoryCustomers()
    [done] = await run(repo, [row(2, name="=HYPERLINK(1)", city="@杭州", tags=["-x", "y"])])
    customer = repo.customers[str(done.customer_id)]
    figures = CustomerRow(customer.id, None, None, False, None, 0, Decimal(0), None)
    line = dict(zip(EXPORT_COLUMNS, export_line(figures, customer), strict=True))
    assert (line["name"], line["city"], line["tags"]) == ("'=HYPERLINK(1)", "'@杭州", "'-x、y")
    assert line["phone"] == "13800000002"
    customer.erase(T0, "req-1")
    erased = dict(zip(EXPORT_COLUMNS, export_line(figures, customer), strict=True))
    assert (erased["name"], erased["phone"], erased["erased"]) == ("", "", "true")
