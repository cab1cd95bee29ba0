"""When the machine is short of cores, the local stack's relations and notify's bulk replica
yield them to the ledgers (`NICE` in deploy/local/stack.py): a backlog of orders is then committed
by the archive and loyalty sooner (docs/performance.md, "The ledgers first", "Notify's bulk in a
replica of its own"), while notify's own process, which sends what people wait on, keeps the
default weight. Linux shares the cores
between sessions before it shares them between a session's threads, and each process the stack
starts is a session of its own, so the weight must be the session's (its autogroup), not only
the process's nice value."""

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackutil import local_stack

AUTOGROUP = Path("/proc/self/autogroup")


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """`start_service` runs a stand-in that sleeps instead of `python -m crm_NAME`; yields the
    list the started processes' ids go into, and stops them after the test."""
    script = tmp_path / "service"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(script))
    pids: list[int] = []
    yield pids
    for pid in pids:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def started(name: str, pids: list[int], tmp_path: Path, process: str = "") -> int:
    proc = local_stack.start_service(name, {}, tmp_path / f"{process or name}.log", process)
    pids.append(proc.pid)
    return proc.pid


def autogroup_nice(pid: int) -> int:
    """`/autogroup-123 nice 10` -> 10."""
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])


def test_relations_and_notifys_bulk_run_at_the_lowest_weight_and_the_rest_at_the_default(
    stand_in: list[int], tmp_path: Path
) -> None:
    pids = {name: started(name, stand_in, tmp_path) for name in local_stack.SERVICES}
    pids |= {
        name: started(replica.service, stand_in, tmp_path, name)
        for name, replica in local_stack.REPLICAS.items()
    }
    base = os.getpriority(os.PRIO_PROCESS, 0)  # what they inherit (a runner may be niced)
    assert {name: os.getpriority(os.PRIO_PROCESS, pid) for name, pid in pids.items()} == {
        "archive": base,
        "tickets": base,
        "loyalty": base,
        "notify": base,
        "relations": 19,
        "notify-bulk": 19,
    }


@pytest.mark.skipif(not AUTOGROUP.exists(), reason="this kernel groups no sessions (autogroup)")
def test_the_weight_is_the_whole_sessions_where_the_kernel_shares_cores_by_session(
    stand_in: list[int], tmp_path: Path
) -> None:
    names = ("archive", "notify", "relations")  # back to back: rate-limited when unprivileged
    pids = {name: started(name, stand_in, tmp_path) for name in names}
    pids["notify-bulk"] = started("notify", stand_in, tmp_path, "notify-bulk")
    assert {name: autogroup_nice(pid) for name, pid in pids.items()} == {
        "archive": 0,
        "notify": 0,
        "relations": 19,
        "notify-bulk": 19,
    }
    assert len({os.getsid(pid) for pid in pids.values()}) == 4  # a session each
