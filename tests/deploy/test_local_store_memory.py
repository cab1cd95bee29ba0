"""The local store keeps the memory its allocator freed (`STORE_ENV`): handing pages back
to the kernel cost it about a tenth of its CPU in the shop replay (docs/performance.md, "The store
keeps its memory"). A value the person running the stack set wins."""

from pathlib import Path

import pytest
from stackutil import store_environment


def test_the_store_runs_with_its_allocator_keeping_freed_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MIMALLOC_PURGE_DELAY", raising=False)
    assert store_environment(tmp_path)["MIMALLOC_PURGE_DELAY"] == "-1"


def test_a_setting_in_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIMALLOC_PURGE_DELAY", "250")
    assert store_environment(tmp_path)["MIMALLOC_PURGE_DELAY"] == "250"
