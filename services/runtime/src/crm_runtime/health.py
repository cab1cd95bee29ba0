"""Readiness: what is wrong right now, by name. `/readyz` is red while anything is.

A check may be failed by several holders at once (a process's consumers, each applying its own
batches): it stays failed until every holder that failed it reports it ok again."""


class Health:
    def __init__(self) -> None:
        self._problems: dict[str, dict[str, str]] = {}
        """check -> holder -> reason, in the order they failed."""

    def fail(self, check: str, reason: str, holder: str = "") -> None:
        self._problems.setdefault(check, {}).setdefault(holder, reason)

    def ok(self, check: str, holder: str = "") -> None:
        holders = self._problems.get(check)
        if holders is None:
            return
        holders.pop(holder, None)
        if not holders:
            del self._problems[check]

    def problems(self) -> dict[str, str]:
        """Each failed check with the reason its first holder gave."""
        return {check: next(iter(holders.values())) for check, holders in self._problems.items()}
