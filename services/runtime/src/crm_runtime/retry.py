"""The one retry loop: exponential backoff for as long as a failure is transient."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from crm_runtime.errors import is_transient

log = logging.getLogger(__name__)
T = TypeVar("T")


class Backoff:
    """Exponential backoff: `initial`, doubling, capped at `maximum`; retried forever."""

    def __init__(self, initial: float = 0.2, maximum: float = 15.0) -> None:
        self.initial = initial
        self.maximum = maximum

    def delays(self, start: float | None = None) -> Iterator[float]:
        delay = self.initial if start is None else start
        while True:
            yield delay
            delay = min(delay * 2, self.maximum)


async def retrying(
    operation: str,
    call: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    retry: Callable[[BaseException], bool] = is_transient,
    on_failure: Callable[[BaseException], None] | None = None,
    on_success: Callable[[], None] | None = None,
) -> T:
    """Run `call` until it succeeds, sleeping the backoff's delays after each failure that
    `retry` admits (a transient one, by default); any other failure is raised at once."""
    delays = backoff.delays()
    while True:
        try:
            result = await call()
        except Exception as exc:
            if not retry(exc):
                raise
            if on_failure is not None:
                on_failure(exc)
            delay = next(delays)
            log.warning(
                "transient failure, retrying",
                extra={"operation": operation, "error": type(exc).__name__, "delay_s": delay},
            )
            await asyncio.sleep(delay)
            continue
        if on_success is not None:
            on_success()
        return result
