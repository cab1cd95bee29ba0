"""`crm import customers`: a spreadsheet of customers (CSV or XLSX) into the archive.

The file is read row by row (any size, in bounded memory); each row is mapped to the fields of
`POST /customers` by its column header (Chinese and English headers are known, `--map` adds
more) and sent in batches to the archive's `POST /customers/import`, which validates every row,
refuses a phone or e-mail already on file, and creates the rest in one transaction per batch.
The archive derives each customer's id from the row's content, so running the same file again
creates nothing new: rows already imported answer `exists`. Rows that cannot be taken in are
written to a rejects file with their row number and the reason.
"""

import csv
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from openpyxl import load_workbook

from crm_cli.errors import EXIT_SERVICE, CliError

FIELDS = (
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
)
"""What a column can be mapped to: the fields of `POST /customers`."""

DEFAULT_HEADERS: dict[str, str] = {
    # English
    "type": "type",
    "customer type": "type",
    "name": "name",
    "full name": "name",
    "customer name": "name",
    "phone": "phone",
    "mobile": "phone",
    "phone number": "phone",
    "telephone": "phone",
    "email": "email",
    "e-mail": "email",
    "email address": "email",
    "birthday": "birthday",
    "date of birth": "birthday",
    "gender": "gender",
    "sex": "gender",
    "city": "city",
    "address": "address",
    "company": "company",
    "organisation": "company",
    "organization": "company",
    "job title": "job_title",
    "job_title": "job_title",
    "title": "job_title",
    "position": "job_title",
    "tags": "tags",
    "owner": "account_owner",
    "account owner": "account_owner",
    "account_owner": "account_owner",
    # 中文
    "类型": "type",
    "客户类型": "type",
    "姓名": "name",
    "名称": "name",
    "客户名称": "name",
    "客户姓名": "name",
    "手机": "phone",
    "手机号": "phone",
    "手机号码": "phone",
    "电话": "phone",
    "联系电话": "phone",
    "邮箱": "email",
    "电子邮件": "email",
    "电子邮箱": "email",
    "生日": "birthday",
    "出生日期": "birthday",
    "性别": "gender",
    "城市": "city",
    "所在城市": "city",
    "地址": "address",
    "联系地址": "address",
    "公司": "company",
    "单位": "company",
    "工作单位": "company",
    "职位": "job_title",
    "职务": "job_title",
    "标签": "tags",
    "责任人": "account_owner",
    "负责人": "account_owner",
    "客户经理": "account_owner",
}
"""Column headers understood without `--map`, compared without case and surrounding blanks."""

TYPES = {
    "person": "person",
    "individual": "person",
    "个人": "person",
    "company": "company",
    "business": "company",
    "organisation": "company",
    "organization": "company",
    "企业": "company",
    "公司": "company",
    "单位": "company",
}
GENDERS = {
    "female": "female",
    "f": "female",
    "女": "female",
    "male": "male",
    "m": "male",
    "男": "male",
    "other": "other",
    "其他": "other",
    "undisclosed": "undisclosed",
    "保密": "undisclosed",
    "未知": "undisclosed",
}
TAG_SEPARATORS = re.compile(r"[,;，；、|]")
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%Y年%m月%d日", "%d/%m/%Y")
MAX_CELL = 2_000
"""A cell longer than this is a mistake in the file (a whole paragraph pasted in)."""
MAX_BATCH_BYTES = 48 * 1024
"""A batch's body stays under this: the services refuse bodies over 64 KiB by default."""


class RowError(ValueError):
    """A row that cannot be taken in; the message is the reason written to the rejects file."""


def parse_map(text: str | None) -> dict[str, str]:
    """`--map 姓名=name,手机=phone` → {"姓名": "name", "手机": "phone"} (a usage error if bad)."""
    found: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        header, sep, target = part.partition("=")
        target = target.strip()
        if not sep or not header.strip() or target not in FIELDS:
            raise CliError(
                f"--map: {part.strip()!r} is not HEADER=FIELD with FIELD one of {', '.join(FIELDS)}"
            )
        found[header.strip().lower()] = target
    return found


def column_map(headers: list[str], overrides: Mapping[str, str]) -> dict[int, str]:
    """Column index → field, from the headers (`overrides` first, then the known headers).
    A usage error when no column gives a name, a phone or an e-mail, or two give the same
    field."""
    known = {**DEFAULT_HEADERS, **overrides}
    mapping: dict[int, str] = {}
    for index, header in enumerate(headers):
        target = known.get(header.strip().lower())
        if target is None:
            continue
        if target in mapping.values():
            raise CliError(f"two columns map to {target!r}: say which with --map")
        mapping[index] = target
    if not {"name", "phone", "email"} & set(mapping.values()):
        raise CliError(
            "no column is a name, a phone or an e-mail: headers are "
            f"{', '.join(repr(h) for h in headers)}; say which with --map HEADER=name,..."
        )
    return mapping


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a phone number a spreadsheet made a number
    return str(value).strip()


def _birthday(value: object) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = _text(value)
    for pattern in DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).date().isoformat()
        except ValueError:
            continue
    raise RowError(f"birthday {text!r} is not a date (YYYY-MM-DD)")


def to_customer(values: list[object], mapping: Mapping[int, str]) -> dict[str, Any]:
    """The `POST /customers` body of one row; `RowError` with the reason when it cannot be one.
    Empty cells are left out; the service checks the rest (formats, lengths, duplicates)."""
    customer: dict[str, Any] = {}
    for index, target in mapping.items():
        raw = values[index] if index < len(values) else None
        if target == "birthday" and isinstance(raw, date):
            customer[target] = _birthday(raw)
            continue
        text = _text(raw)
        if not text:
            continue
        if len(text) > MAX_CELL:
            raise RowError(f"{target}: {len(text)} characters, at most {MAX_CELL}")
        if target == "type":
            if text.lower() not in TYPES:
                raise RowError(f"type {text!r} is neither a person (个人) nor a company (企业)")
            customer[target] = TYPES[text.lower()]
        elif target == "gender":
            if text.lower() not in GENDERS:
                raise RowError(f"gender {text!r} is not one of female, male, other, undisclosed")
            customer[target] = GENDERS[text.lower()]
        elif target == "birthday":
            customer[target] = _birthday(text)
        elif target == "tags":
            customer[target] = [t.strip() for t in TAG_SEPARATORS.split(text) if t.strip()]
        else:
            customer[target] = text
    if not {"name", "phone", "email"} & customer.keys():
        raise RowError("no name, phone or e-mail")
    return customer


def body_size(customer: Mapping[str, Any]) -> int:
    """The bytes a row adds to a request body (its JSON, with the row number around it)."""
    return len(json.dumps(customer, ensure_ascii=False).encode()) + 40


@dataclass(frozen=True)
class Sheet:
    headers: list[str]
    rows: Iterator[tuple[int, list[object]]]
    """(row number as a spreadsheet shows it, the cells); the header is row 1."""
    total: int | None
    """How many data rows, when the format says so cheaply (for the progress bar)."""


def _csv_rows(path: Path, encoding: str) -> Iterator[tuple[int, list[object]]]:
    with path.open(newline="", encoding=encoding) as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for number, cells in enumerate(reader, start=2):
            if any(cell.strip() for cell in cells):
                yield number, list(cells)


def _csv_encoding(path: Path) -> str:
    """UTF-8 (with or without a BOM), else GB18030 (Excel's CSV on a Chinese Windows)."""
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    try:
        head.decode("utf-8-sig")
        return "utf-8-sig"
    except UnicodeDecodeError as exc:
        if exc.start > len(head) - 4:  # a character cut at the end of the sample
            return "utf-8-sig"
        return "gb18030"


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return max(
            sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b"")) - 1, 0
        )


def open_sheet(path: Path) -> Sheet:
    """The headers and rows of a CSV or XLSX file (the first worksheet); a usage error when it
    is neither or has no header row."""
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return _xlsx_sheet(path)
    if suffix not in (".csv", ".txt"):
        raise CliError(f"{path}: not a .csv or .xlsx file")
    encoding = _csv_encoding(path)
    try:
        with path.open(newline="", encoding=encoding) as handle:
            headers = next(csv.reader(handle), None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CliError(f"{path}: cannot read it as CSV ({exc})") from exc
    if not headers:
        raise CliError(f"{path}: empty, no header row")
    return Sheet([h.strip() for h in headers], _csv_rows(path, encoding), _count_lines(path))


def _xlsx_sheet(path: Path) -> Sheet:
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # whatever openpyxl raises, the workbook is the user's file
        raise CliError(f"{path}: cannot read it as XLSX ({exc})") from exc
    sheet = book.worksheets[0]
    cells = sheet.iter_rows(values_only=True)
    first = next(cells, None)
    if not first:
        raise CliError(f"{path}: empty, no header row")
    total = sheet.max_row - 1 if sheet.max_row else None

    def rows() -> Iterator[tuple[int, list[object]]]:
        for number, row in enumerate(cells, start=2):
            if any(_text(value) for value in row):
                yield number, list(row)
        book.close()

    return Sheet([_text(h) for h in first], rows(), total)


@dataclass
class ImportReport:
    created: int = 0
    existing: int = 0
    """Rows imported by an earlier run of the same file (nothing changed)."""
    rejected: int = 0
    checked: int = 0
    """`--dry-run`: rows that would be created."""
    reasons: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        kind = reason.split(":")[0][:60]
        self.reasons[kind] = self.reasons.get(kind, 0) + 1


class Rejects:
    """The rejects file: `row,reason` for every row not taken in (UTF-8 with a BOM, so Excel
    shows Chinese reasons correctly)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("w", newline="", encoding="utf-8-sig")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(["row", "reason"])

    def write(self, row: int, reason: str) -> None:
        self._writer.writerow([row, reason])

    def close(self) -> None:
        self._handle.close()


class Archive(Protocol):
    def send(self, rows: list[dict[str, Any]], dry_run: bool) -> list[dict[str, Any]]:
        """One result per row, in order: `{"row", "status", "id"?, "reason"?}`; `status` is
        created, exists (imported before), valid (`dry_run`: would be created) or rejected."""
        ...


class ArchiveClient:
    """`POST /customers/import` with the caller's token; transient failures (connection, 5xx,
    429) are retried a few times, then a `CliError`. A 401/403 is a `CliError` at once."""

    def __init__(self, url: str, token: str, *, timeout: float = 120.0, attempts: int = 5) -> None:
        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
        self.url = url
        self.attempts = attempts

    def send(self, rows: list[dict[str, Any]], dry_run: bool) -> list[dict[str, Any]]:
        """One result per row, in order: `{"row", "status", "id"?, "reason"?}`."""
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(min(0.5 * 2**attempt, 8.0))
            try:
                answer = self._client.post(
                    "/customers/import",
                    params={"dry_run": str(dry_run).lower()},
                    json={"rows": rows},
                )
            except httpx.HTTPError as exc:
                problem = str(exc) or type(exc).__name__
                continue
            if answer.status_code in (401, 403):
                raise CliError(
                    f"the archive at {self.url} refused the token ({answer.status_code}): "
                    f"{_detail(answer)}; importing needs a supervisor token (--token / CRM_TOKEN)",
                    EXIT_SERVICE,
                )
            if answer.status_code == 429 or answer.status_code >= 500:
                problem = f"{answer.status_code} {_detail(answer)}"
                continue
            if answer.status_code != 200:
                raise CliError(
                    f"the archive at {self.url} answered {answer.status_code}: {_detail(answer)}",
                    EXIT_SERVICE,
                )
            results: list[dict[str, Any]] = answer.json()["results"]
            if len(results) != len(rows):
                raise CliError(
                    f"the archive at {self.url} answered {len(results)} results for {len(rows)} "
                    "rows: is it a version without `POST /customers/import`?",
                    EXIT_SERVICE,
                )
            return results
        raise CliError(f"the archive at {self.url}: {problem}", EXIT_SERVICE)

    def close(self) -> None:
        self._client.close()


def _detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json().get("detail")
    except ValueError:
        detail = None
    return str(detail) if detail else answer.text[:200]


def import_customers(
    sheet: Sheet,
    mapping: Mapping[int, str],
    client: Archive,
    rejects: Rejects,
    *,
    dry_run: bool,
    batch_size: int,
    on_rows: Callable[[int], None] | None = None,
) -> ImportReport:
    """Every row of the sheet, in batches: mapped, sent, counted; a row that cannot be taken in
    goes to the rejects file with its reason. `on_rows(n)` after each n rows handled."""
    report = ImportReport()
    pending: list[tuple[int, dict[str, Any] | str]] = []
    """(row, the row to send or the reason it was refused here), in file order."""
    to_send = 0
    size = 0

    def flush() -> None:
        sent = [
            {"row": row, "customer": found} for row, found in pending if not isinstance(found, str)
        ]
        results = iter(client.send(sent, dry_run) if sent else [])
        for row, found in pending:
            result = (
                {"status": "rejected", "reason": found} if isinstance(found, str) else next(results)
            )
            status = result.get("status")
            if status == "created":
                report.created += 1
            elif status == "exists":
                report.existing += 1
            elif status == "valid":
                report.checked += 1
            else:
                reason = str(result.get("reason") or f"refused ({status})")
                rejects.write(row, reason)
                report.reject(reason)
        if on_rows is not None and pending:
            on_rows(len(pending))
        pending.clear()

    for number, cells in sheet.rows:
        try:
            customer = to_customer(cells, mapping)
        except RowError as exc:
            pending.append((number, str(exc)))
            if len(pending) >= 4 * batch_size:
                flush()
                to_send = size = 0
            continue
        if body_size(customer) > MAX_BATCH_BYTES:
            pending.append((number, f"row: more than {MAX_BATCH_BYTES // 1024} KiB of text"))
            continue
        if size + body_size(customer) > MAX_BATCH_BYTES:
            flush()
            to_send = size = 0
        pending.append((number, customer))
        to_send += 1
        size += body_size(customer)
        if to_send >= batch_size:
            flush()
            to_send = size = 0
    flush()
    return report
