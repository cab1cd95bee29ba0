"""Where the store's time goes during a shop replay (issue #16): `perf` on the store process and
a tally of what each service asks of it.

    python benchmarks/store_share.py [--orders 10000] [--customers 3400] [--settled] [--out DIR]

Runs `benchmarks/shop_replay.py` with `store_tally/` first on `PYTHONPATH` (a PyMongo command
listener in every process, see `store_tally/sitecustomize.py`). When the registrations are
committed it starts `perf record -g` on the replay's own store process (the Rust SecantusDB
server) and stops it when archive and loyalty have committed every order (`--settled`: passed
to `shop_replay.py`, and the phase starts once notify has sent the welcome e-mails). Prints, for
the orders phase only: per service, the commands it sent per order-log event by command and
collection, the documents it sent, changed and read back; then the store's hottest functions
(`perf report`).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVICES = ("archive", "tickets", "loyalty", "notify", "relations")


def store_pid(parent: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and "secantusd" in cmdline:
            return int(entry.name)
    return None


def totals_at(path: Path, moment: float) -> tuple[str, dict[str, list[int]]]:
    """The process's command line and its last running totals written at or before `moment`."""
    argv, totals = "", {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written
        argv = row["argv"] or argv
        if row["t"] <= moment:
            totals = row["totals"]
    return argv, totals


def service_of(argv: str) -> str:
    for name in SERVICES:
        if f"crm_{name}" in argv:
            return name
    return "benchmark"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=3_400)
    parser.add_argument("--settled", action="store_true", help="shop_replay.py --settled")
    parser.add_argument("--out", default="", help="where the tallies and perf.data go")
    parser.add_argument("--perf", default="perf")
    parser.add_argument("--frequency", type=int, default=499)
    parser.add_argument(
        "--call-graph", default="fp", help="perf's unwinding: fp, or dwarf for callers (heavier)"
    )
    args = parser.parse_args()
    out = Path(args.out or f"/tmp/store-share-{int(time.time())}").resolve()
    tally = out / "tally"
    tally.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CRM_STORE_TALLY": str(tally),
        "PYTHONPATH": os.pathsep.join(
            [str(HERE / "store_tally"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    replay = subprocess.Popen(
        [sys.executable, "-u", str(HERE / "shop_replay.py"), "--orders", str(args.orders),
         "--customers", str(args.customers), *(["--settled"] if args.settled else [])],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    start = "notify's welcome e-mails sent" if args.settled else "registrations committed"
    assert replay.stdout is not None
    perf: subprocess.Popen[bytes] | None = None
    begin = end = 0.0
    events = 0
    for line in replay.stdout:
        print(line, end="", flush=True)
        if line.startswith(start) and perf is None:
            pid = store_pid(replay.pid)
            begin = time.time()
            if pid is not None:
                perf = subprocess.Popen(
                    [args.perf, "record", "--call-graph", args.call_graph,
                     "-F", str(args.frequency), "-p", str(pid), "-o", str(out / "perf.data")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            else:
                print("(no store process of the replay's own: no perf profile)")
        if "order-log events (" in line and "committed everything" in line and not end:
            end = time.time()
            events = int(line.split(" order-log events", 1)[0].replace(",", ""))
            if perf is not None:
                perf.send_signal(signal.SIGINT)
    replay.wait()
    if perf is not None:
        perf.wait(120)
    if not end or not events:
        sys.exit(f"the replay did not finish (exit {replay.returncode})")
    time.sleep(1.5)  # the tallies' last lines

    by_service: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0] * 6))
    for path in sorted(tally.glob("*.jsonl")):
        argv, first = totals_at(path, begin)
        _, last = totals_at(path, end)
        name = service_of(argv)
        for key, row in last.items():
            before = first.get(key, [0] * 6)
            for i, value in enumerate(row):
                by_service[name][key][i] += value - before[i]
    print(
        f"\nWhat each service asked of the store over the orders phase, per order-log event "
        f"({events:,} events; 'sent': documents or statements in the commands, keys in a find by "
        "_id; 'changed': the replies' n/nModified, 'read': documents returned; 'sent B', 'read B': "
        "the BSON bytes of the documents and statements sent and of those returned)"
    )
    print(
        f"{'service':<10} {'command collection':<42} "
        f"{'cmds':>7} {'sent':>7} {'changed':>7} {'read':>7} {'sent B':>8} {'read B':>8}"
    )
    grand = [0.0] * 6
    for name in (*SERVICES, "benchmark"):
        rows = by_service.get(name, {})
        for key, row in sorted(rows.items(), key=lambda kv: -kv[1][0]):
            if row[0] == 0:
                continue
            per = [v / events for v in row]
            grand = [g + p for g, p in zip(grand, per, strict=True)]
            print(
                f"{name:<10} {key:<42} {per[0]:7.3f} {per[1]:7.3f} {per[2]:7.3f} {per[3]:7.3f} "
                f"{per[4]:8.0f} {per[5]:8.0f}"
            )
    print(
        f"{'all':<10} {'':<42} {grand[0]:7.3f} {grand[1]:7.3f} {grand[2]:7.3f} {grand[3]:7.3f} "
        f"{grand[4]:8.0f} {grand[5]:8.0f}"
    )
    (out / "tally.json").write_text(json.dumps(by_service, indent=1))

    if perf is not None and (out / "perf.data").exists():
        print("\nThe store's samples over the orders phase (perf report, self):")
        report = subprocess.run(
            [args.perf, "report", "-i", str(out / "perf.data"), "--no-children", "--stdio",
             "--percent-limit", "0.7", "-g", "none", "--sort", "symbol"],
            capture_output=True, text=True,
        )  # fmt: skip
        print("\n".join(line for line in report.stdout.splitlines() if line.strip()[:1] != "#"))
    print(f"\nfiles: {out}")


if __name__ == "__main__":
    main()
