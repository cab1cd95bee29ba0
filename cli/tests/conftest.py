"""The real stack for the CLI's integration tests.

cli/tests is outside tests/, so tests/conftest.py's `stack` fixture is not visible here: this
one starts the same stack (tests/stackutil.py `running_stack`) in a folder of its own, module
-scoped so that it is stopped before tests/ starts its own. The CLI's tests delete topics and
re-drive dead letters: better on a broker of their own than on the session's shared one.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from stackutil import Stack, running_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("cli-test-stack") as started:
        yield started
