"""Readiness: what is wrong right now, by name. `/readyz` is red while anything is."""

import time


class Health:
    def __init__(self) -> None:
        self._problems: dict[str, tuple[str, float]] = {}

    def fail(self, check: str, reason: str) -> None:
        if check not in self._problems:
            self._problems[check] = (reason, time.monotonic())

    def ok(self, check: str) -> None:
        self._problems.pop(check, None)

    def problems(self) -> dict[str, str]:
        return {check: reason for check, (reason, _) in self._problems.items()}
