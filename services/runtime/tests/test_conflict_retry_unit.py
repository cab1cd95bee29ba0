"""An HTTP action that lost a race to another writer is redone from its reads, whether the
conflict was seen by the version check or by the store aborting the transaction."""

import pytest
from pymongo.errors import OperationFailure

from crm_runtime.errors import ConcurrencyConflictError, retry_on_conflict

pytestmark = pytest.mark.unit


def write_conflict() -> OperationFailure:
    return OperationFailure(
        "Please retry your operation or multi-document transaction.",
        112,
        {"errorLabels": ["TransientTransactionError"], "code": 112, "codeName": "WriteConflict"},
    )


@pytest.mark.parametrize(
    "conflict", [ConcurrencyConflictError("changed"), write_conflict()], ids=["version", "store"]
)
async def test_an_action_that_lost_a_race_is_redone(conflict: Exception) -> None:
    calls: list[int] = []

    async def action() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise conflict
        return "done"

    assert await retry_on_conflict(action) == "done"
    assert len(calls) == 3


async def test_another_failure_is_not_redone() -> None:
    calls: list[int] = []

    async def action() -> str:
        calls.append(1)
        raise OperationFailure("duplicate key", 11000)

    with pytest.raises(OperationFailure):
        await retry_on_conflict(action)
    assert len(calls) == 1
