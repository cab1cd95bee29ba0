"""Which failures are transient (retry, never drop) and which mean the message is bad (DLQ)."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import errors as kafka_errors
from pymongo import errors as mongo_errors

T = TypeVar("T")


class TransientError(Exception):
    """Raise to say: this will likely work later; do not dead-letter, retry."""


class ConcurrencyConflictError(TransientError):
    """Someone else changed the record between read and write; redo the batch."""


_KAFKA_TRANSIENT: tuple[type[BaseException], ...] = (
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.RequestTimedOutError,
    kafka_errors.NotLeaderForPartitionError,
    kafka_errors.LeaderNotAvailableError,
    kafka_errors.NotEnoughReplicasError,
    kafka_errors.ProducerClosed,
)


def _says_write_conflict(exc: BaseException) -> bool:
    text = str(exc).lower().replace("_", " ").replace("-", " ")
    return "write conflict" in text or "writeconflict" in text


def is_transient(exc: BaseException) -> bool:
    """True for broker or database outages and write conflicts; False for bad data and bugs."""
    if isinstance(exc, TransientError | asyncio.TimeoutError | ConnectionError):
        return True
    if isinstance(exc, mongo_errors.ConnectionFailure | mongo_errors.NotPrimaryError):
        return True
    if isinstance(exc, mongo_errors.PyMongoError) and (
        exc.has_error_label("TransientTransactionError")
        or exc.has_error_label("UnknownTransactionCommitResult")
        or exc.has_error_label("RetryableWriteError")
    ):
        return True
    if isinstance(exc, mongo_errors.OperationFailure) and exc.code in {
        112,  # WriteConflict
        189,  # PrimarySteppedDown
        91,  # ShutdownInProgress
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        10107,  # NotWritablePrimary
    }:
        return True
    if isinstance(exc, mongo_errors.OperationFailure) and _says_write_conflict(exc):
        return True  # however the store words it (SecantusDB: an internal error at commit)
    if isinstance(exc, _KAFKA_TRANSIENT):
        return True
    return isinstance(exc, kafka_errors.KafkaError) and bool(getattr(exc, "retriable", False))


def is_conflict(exc: BaseException) -> bool:
    """A race lost to another writer: an optimistic-concurrency conflict, or the store's write
    conflict that aborted the whole transaction (two imports' batches at once). Redoing the
    action from its reads is safe: nothing of it was kept."""
    if isinstance(exc, ConcurrencyConflictError):
        return True
    if isinstance(exc, mongo_errors.PyMongoError) and exc.has_error_label(
        "TransientTransactionError"
    ):
        return True
    return isinstance(exc, mongo_errors.OperationFailure) and (
        exc.code == 112 or _says_write_conflict(exc)
    )


async def retry_on_conflict(action: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Redo an HTTP action that lost a race (`is_conflict`; e.g. to the consumer): it reads the
    record again and reapplies the change. The last conflict propagates (a 503)."""
    for _ in range(attempts - 1):
        try:
            return await action()
        except Exception as exc:
            if not is_conflict(exc):
                raise
            await asyncio.sleep(0)
    return await action()
