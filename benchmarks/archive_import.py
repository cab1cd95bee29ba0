"""`crm import customers` at scale: a CSV of N customers (Chinese headers, names, cities, tags)
into a fresh archive on a private stack, timed end to end as a person runs it (the real command,
batches over HTTP), then the same file again (every row found: nothing changes). Prints rows/s,
how long the archive's relay took after the command to publish what it stored, the archive's,
the store's and the command's CPU (100% = one core, over the command's time; the relay's tail
included), the CPU time the three spent per row (which depends far less on the load than the
seconds do), the archive's memory and the load average (the machine is shared: compare only
runs side by side).

    python benchmarks/archive_import.py [--rows 100000]
"""

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchutil import cpu_seconds, outbox_drained, print_table, private_stack, rss_mb

TOKEN = "bench-supervisor"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
CITIES = ["上海", "北京", "杭州", "深圳", "成都", "武汉", "南京", "苏州"]


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["姓名", "手机", "邮箱", "城市", "公司", "职位", "标签"])
        for i in range(rows):
            name = rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=2))
            out.writerow(
                [
                    name,
                    f"13{i:09d}",
                    f"c{i}@example.com",
                    rng.choice(CITIES),
                    f"{rng.choice(CITIES)}贸易有限公司",
                    "采购经理",
                    "导入、华东",
                ]
            )


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def run_import(url: str, path: Path) -> tuple[float, float, str]:
    """(seconds, the command's CPU seconds, its summary line)."""
    crm = str(Path(sys.executable).parent / "crm")
    env = {**os.environ, "CRM_TOKEN": TOKEN, "CRM_ARCHIVE_URL": url}
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        [crm, "import", "customers", str(path), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    return seconds, children_cpu() - cpu, done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with private_stack() as bench:
        path = bench.workdir / "customers.csv"
        write_csv(path, args.rows)
        tokens = json.dumps({TOKEN: {"user": "sup-bench", "roles": ["supervisor"]}})
        port, proc = bench.start_service("archive", {"CRM_API_TOKENS": tokens})
        url = f"http://127.0.0.1:{port}"
        rows = []
        for label in ("first run", "same file again"):
            cpu, store = cpu_seconds(proc.pid), cpu_seconds(bench.store_pid)
            seconds, command_cpu, summary = run_import(url, path)
            # The CPU figures include relaying what the run stored (two events per customer).
            started = time.perf_counter()
            outbox_drained(port, timeout_s=600)
            drained = time.perf_counter() - started
            used = cpu_seconds(proc.pid) - cpu
            stored = cpu_seconds(bench.store_pid) - store
            rows.append(
                (
                    label,
                    f"{args.rows:,}",
                    f"{seconds:.1f}",
                    f"{args.rows / seconds:,.0f}",
                    f"{drained:.1f}",
                    f"{used / seconds:.0%}",
                    f"{stored / seconds:.0%}",
                    f"{command_cpu / seconds:.0%}",
                    f"{(used + stored + command_cpu) / args.rows * 1000:.2f}",
                    f"{rss_mb(proc.pid):.0f}",
                    " ".join(f"{load:.1f}" for load in os.getloadavg()),
                    summary,
                )
            )
        print_table(
            "crm import customers",
            [
                "run",
                "rows",
                "seconds",
                "rows/s",
                "relayed s later",
                "archive CPU",
                "store CPU",
                "crm CPU",
                "CPU ms/row (the three)",
                "archive RSS MB",
                "load (1/5/15 min)",
                "summary",
            ],
            rows,
        )


if __name__ == "__main__":
    main()
