"""`crm import customers` without a stack: reading CSV and XLSX files, mapping headers, turning
rows into customers or reasons, batches within the services' body limit, the rejects file."""

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from typer.testing import CliRunner

from crm_cli import importing
from crm_cli.errors import CliError
from crm_cli.main import app

pytestmark = pytest.mark.unit
runner = CliRunner()


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_chinese_and_english_headers_are_known_without_a_map() -> None:
    mapping = importing.column_map(["姓名", "手机号", "Email", " City ", "备注"], {})
    assert mapping == {0: "name", 1: "phone", 2: "email", 3: "city"}


def test_a_map_names_headers_the_defaults_do_not_know() -> None:
    overrides = importing.parse_map("会员名=name, 移动电话=phone")
    assert importing.column_map(["会员名", "移动电话"], overrides) == {0: "name", 1: "phone"}


@pytest.mark.parametrize("bad", ["姓名", "姓名=nickname", "=name"])
def test_a_malformed_map_is_a_usage_error(bad: str) -> None:
    with pytest.raises(CliError, match="--map"):
        importing.parse_map(bad)


def test_a_file_with_no_name_phone_or_email_column_is_refused_naming_its_headers() -> None:
    with pytest.raises(CliError, match="'备注'"):
        importing.column_map(["备注", "金额"], {})


def test_two_columns_for_one_field_are_refused() -> None:
    with pytest.raises(CliError, match="two columns map to 'phone'"):
        importing.column_map(["手机", "电话"], {})


def test_a_row_becomes_the_body_of_post_customers() -> None:
    mapping = {0: "name", 1: "phone", 2: "type", 3: "gender", 4: "birthday", 5: "tags", 6: "city"}
    row: list[object] = ["张三丰", 13800138000.0, "企业", "男", "1990/5/1", "VIP、华东", ""]
    assert importing.to_customer(row, mapping) == {
        "name": "张三丰",
        "phone": "13800138000",
        "type": "company",
        "gender": "male",
        "birthday": "1990-05-01",
        "tags": ["VIP", "华东"],
    }


def test_an_xlsx_date_cell_is_a_birthday() -> None:
    customer = importing.to_customer(["Ann", datetime(1985, 3, 9)], {0: "name", 1: "birthday"})
    assert customer["birthday"] == "1985-03-09"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (["", "", ""], "no name, phone or e-mail"),
        (["Ann", "someday", ""], "birthday 'someday' is not a date"),
        (["Ann", "", "robot"], "gender 'robot'"),
        (["x" * 2001, "", ""], "name: 2001 characters"),
    ],
)
def test_a_row_that_cannot_be_a_customer_says_why(row: list[object], reason: str) -> None:
    with pytest.raises(importing.RowError, match=reason):
        importing.to_customer(row, {0: "name", 1: "birthday", 2: "gender"})


def test_a_gb18030_csv_from_excel_reads_as_chinese(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [["姓名", "手机"], ["韩梅梅", "13900139000"]], "gb18030")
    sheet = importing.open_sheet(path)
    assert sheet.headers == ["姓名", "手机"]
    assert list(sheet.rows) == [(2, ["韩梅梅", "13900139000"])]


def test_blank_lines_are_skipped_and_row_numbers_stay_the_spreadsheets(tmp_path: Path) -> None:
    rows = [["name"], ["A"], [""], ["B"]]
    sheet = importing.open_sheet(write_csv(tmp_path / "c.csv", rows, "utf-8-sig"))
    assert [number for number, _ in sheet.rows] == [2, 4]


def test_an_xlsx_file_reads_its_first_sheet(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["姓名", "手机", "生日"])
    sheet.append(["王五", 13700137000, datetime(1990, 1, 2)])
    book.save(tmp_path / "c.xlsx")
    found = importing.open_sheet(tmp_path / "c.xlsx")
    rows = list(found.rows)
    mapping = importing.column_map(found.headers, {})
    assert importing.to_customer(rows[0][1], mapping) == {
        "name": "王五",
        "phone": "13700137000",
        "birthday": "1990-01-02",
    }


@pytest.mark.parametrize("name", ["c.json", "missing.csv"])
def test_a_file_that_is_not_a_spreadsheet_is_a_usage_error(tmp_path: Path, name: str) -> None:
    if name.endswith(".json"):
        (tmp_path / name).write_text("{}")
    with pytest.raises(CliError):
        importing.open_sheet(tmp_path / name)


class Archive:
    """Stands in for `POST /customers/import`: rows with a phone seen before are refused."""

    def __init__(self) -> None:
        self.rows: set[str] = set()
        self.phones: set[str] = set()

    def send(self, rows: list[dict[str, Any]], dry_run: bool) -> list[dict[str, Any]]:
        results = []
        for row in rows:
            phone = row["customer"].get("phone")
            content = json.dumps(row["customer"], sort_keys=True)
            if content in self.rows:
                results.append({"row": row["row"], "status": "exists", "id": "c"})
            elif phone is not None and phone in self.phones:
                results.append({"row": row["row"], "status": "rejected", "reason": "duplicate"})
            elif dry_run:
                results.append({"row": row["row"], "status": "valid"})
            else:
                self.rows.add(content)
                self.phones.add(phone)
                results.append({"row": row["row"], "status": "created", "id": "c"})
        return results


def test_rows_are_counted_and_rejects_written_with_row_and_reason(tmp_path: Path) -> None:
    rows = [
        ["姓名", "手机", "性别"],
        ["A", "1", ""],
        ["B", "1", ""],
        ["C", "2", "x"],
        ["D", "3", ""],
    ]
    path = write_csv(tmp_path / "c.csv", rows)
    archive = Archive()

    def run() -> tuple[importing.ImportReport, list[list[str]]]:
        sheet = importing.open_sheet(path)
        rejects = importing.Rejects(tmp_path / "rejects.csv")
        mapping = importing.column_map(sheet.headers, {})
        report = importing.import_customers(
            sheet,
            mapping,
            archive,
            rejects,
            dry_run=False,
            batch_size=2,
        )
        rejects.close()
        with rejects.path.open(encoding="utf-8-sig") as handle:
            return report, list(csv.reader(handle))

    report, written = run()
    assert (report.created, report.existing, report.rejected) == (2, 0, 2)
    assert written == [
        ["row", "reason"],
        ["3", "duplicate"],
        ["4", "gender 'x' is not one of female, male, other, undisclosed"],
    ]
    again, _ = run()
    assert (again.created, again.existing, again.rejected) == (0, 2, 2)


def test_the_command_needs_a_token(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [["name"], ["A"]])
    result = runner.invoke(app, ["import", "customers", str(path)], env={"CRM_TOKEN": ""})
    assert result.exit_code == 2
    assert "no token" in result.output


def test_batches_stay_under_the_body_limit(tmp_path: Path) -> None:
    rows = [["name", "address"]] + [[f"客户{i}", "长" * 1500] for i in range(40)]
    path = write_csv(tmp_path / "c.csv", rows)
    sizes: list[int] = []

    class Measuring(Archive):
        def send(self, rows: list[dict[str, Any]], dry_run: bool) -> list[dict[str, Any]]:
            sizes.append(len(json.dumps({"rows": rows}, ensure_ascii=False).encode()))
            return super().send(rows, dry_run)

    sheet = importing.open_sheet(path)
    rejects = importing.Rejects(tmp_path / "rejects.csv")
    mapping = importing.column_map(sheet.headers, {})
    report = importing.import_customers(
        sheet, mapping, Measuring(), rejects, dry_run=False, batch_size=500
    )
    rejects.close()
    assert report.created == 40
    assert len(sizes) > 1
    assert max(sizes) < 64 * 1024
