"""The local store keeps the memory its allocator freed (`STORE_ENV`): handing pages back
to the kernel cost it about a tenth of its CPU in the shop replay (docs/performance.md, "The store
keeps its memory"). A value the person running the stack set wins."""

from pathlib import Path

import pytest
from stackutil import free_port, local_stack


def started_environment(data: Path) -> dict[str, str]:
    proc = local_stack.MongoNode(data, free_port()).start()
    try:
        raw = Path(f"/proc/{proc.pid}/environ").read_bytes()
    finally:
        local_stack.stop_pid(proc.pid, timeout=30)
        proc.wait(10)
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {key.decode(): value.decode() for key, _, value in pairs}


def test_the_store_runs_with_its_allocator_keeping_freed_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MIMALLOC_PURGE_DELAY", raising=False)
    assert started_environment(tmp_path)["MIMALLOC_PURGE_DELAY"] == "-1"


def test_a_setting_in_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIMALLOC_PURGE_DELAY", "250")
    assert started_environment(tmp_path)["MIMALLOC_PURGE_DELAY"] == "250"
