"""`crm import customers` on the real stack (issue 17): a spreadsheet of 10,000 customers with
Chinese headers, 300 of its rows bad in three ways (an address that is no e-mail, a phone an
earlier row has, a birthday that is no date) — exactly 9,700 customers go in, the rejects file
holds the 300 with their row numbers and reasons, and a second run of the same file changes
nothing. An agent may not import; a dry run enters nothing. The segment exported as CSV
(supervisors only) holds every one of them with their personal data, each audited as read, and
the service's memory stays within its target while it streams."""

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from stackutil import ServiceProcess, Stack

pytestmark = pytest.mark.e2e
TOKENS = {
    "import-sup-token": {"user": "sup-01", "roles": ["supervisor"]},
    "import-agent-token": {"user": "agent-07", "roles": ["agent"]},
}
CRM = [str(Path(sys.executable).parent / "crm")]
ROWS, BAD_EACH = 10_000, 100


@pytest.fixture(scope="module")
def archive(stack: Stack) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated("archive", stack)
    service.env["CRM_API_TOKENS"] = json.dumps(TOKENS)
    service.start()
    yield service
    service.stop()


def spreadsheet(path: Path) -> dict[int, str]:
    """The file, and the row numbers that must be rejected with what their reason says."""
    bad: dict[int, str] = {}
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["客户类型", "姓名", "手机", "邮箱", "生日", "城市", "标签", "备注"])
        for i in range(ROWS):
            number = i + 2
            phone, email, birthday = f"139{i:08d}", f"c{i}@example.com", "1990-05-04"
            if i % 33 == 7 and len(bad) < BAD_EACH:
                email, bad[number] = "不是邮箱", "email"
            elif i % 33 == 17 and len(bad) < 2 * BAD_EACH:
                phone, bad[number] = f"139{i - 1:08d}", "duplicate"
            elif i % 33 == 27 and len(bad) < 3 * BAD_EACH:
                birthday, bad[number] = "去年夏天", "birthday"
            kind = "企业" if i % 10 == 0 else "个人"
            out.writerow([kind, f"导入客户{i}", phone, email, birthday, "杭州", "导入、华东", "x"])
    assert len(bad) == 3 * BAD_EACH
    return bad


def crm_import(archive: ServiceProcess, path: Path, token: str, *args: str) -> Any:
    env = {**os.environ, "CRM_TOKEN": token, "CRM_ARCHIVE_URL": archive.url}
    command = [*CRM, "import", "customers", str(path), "--no-progress", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def customers_in(stack: Stack, archive: ServiceProcess) -> int:
    database = archive.env["CRM_ARCHIVE_DATABASE"]
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongodb_url)
    with client:
        return client[database]["customers"].count_documents({})


def test_import_accepts_the_good_rows_rejects_the_bad_with_reasons_and_reruns_change_nothing(
    stack: Stack, archive: ServiceProcess, tmp_path: Path
) -> None:
    path = tmp_path / "客户.csv"
    bad = spreadsheet(path)

    refused = crm_import(archive, path, "import-agent-token")
    assert refused.returncode == 4, refused.stderr
    assert "403" in refused.stderr

    checked = crm_import(archive, path, "import-sup-token", "--dry-run")
    assert checked.returncode == 1, checked.stderr
    assert "9700 would be created" in checked.stderr
    assert customers_in(stack, archive) == 0

    first = crm_import(archive, path, "import-sup-token")
    assert first.returncode == 1, first.stderr
    assert "9700 created, 0 imported before, 300 rejected" in first.stderr
    assert customers_in(stack, archive) == ROWS - 3 * BAD_EACH
    rejects = Path(str(path) + ".rejects.csv")
    with rejects.open(encoding="utf-8-sig") as handle:
        found = {int(row["row"]): row["reason"] for row in csv.DictReader(handle)}
    assert set(found) == set(bad)
    for number, kind in bad.items():
        assert kind in found[number], (number, found[number])

    again = crm_import(archive, path, "import-sup-token")
    assert "0 created, 9700 imported before, 300 rejected" in again.stderr
    assert customers_in(stack, archive) == ROWS - 3 * BAD_EACH


MEMORY_TARGET_MB = 200
"""The services' resident-memory target (docs/performance.md)."""


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def test_the_export_streams_the_segment_audited_within_the_memory_target(
    stack: Stack, archive: ServiceProcess, tmp_path: Path
) -> None:
    path = tmp_path / "segment.csv"
    if customers_in(stack, archive) == 0:  # run alone: the import test fills the archive
        spreadsheet(path)
        crm_import(archive, path, "import-sup-token")
    more = tmp_path / "more.csv"  # a segment of 10,000: the 9,700 imported and 300 more
    with more.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["姓名", "手机", "城市", "标签"])
        out.writerows([f"导入客户补{i}", f"136{i:08d}", "杭州", "导入"] for i in range(300))
    assert crm_import(archive, more, "import-sup-token").returncode == 0
    expected = customers_in(stack, archive)
    assert expected == ROWS
    url = archive.url + "/customers/export.csv"
    params = {"city": "杭州", "tag": "导入"}
    agent = httpx.get(url, params=params, headers={"Authorization": "Bearer import-agent-token"})
    assert agent.status_code == 403

    supervisor = {"Authorization": "Bearer import-sup-token"}
    with httpx.stream("GET", url, params=params, headers=supervisor, timeout=300) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/csv")
        body = b"".join(answer.iter_bytes()).decode("utf-8-sig")
    lines = list(csv.DictReader(body.splitlines()))
    assert len(lines) == expected
    assert {line["city"] for line in lines} == {"杭州"}
    assert all(line["name"].startswith("导入客户") for line in lines)
    assert archive.proc is not None
    assert peak_rss_mb(archive.proc.pid) < MEMORY_TARGET_MB

    database = archive.env["CRM_ARCHIVE_DATABASE"]
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongodb_url)
    with client:
        reads = client[database]["pii_reads"]
        audited = reads.count_documents({"route": "GET /customers/export.csv"})
    assert audited == expected
