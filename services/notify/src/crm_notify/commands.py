"""What staff ask of notify over HTTP: change a customer's locale, time zone and opt-outs. Plain
functions over the `NotifyRepository` port (`update_preferences(command, repository, clock)`),
saved with its one `save(changes)`: unit tests run them on the in-memory fakes.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from crm_notify.domain.policy import Preferences, zone_of
from crm_notify.handlers import cancel_withdrawn
from crm_notify.ports import Changes, NotifyRepository
from crm_runtime.errors import retry_on_conflict
from crm_runtime.sweeps import Clock, utc_now


class NoPreferencesError(LookupError):
    """Notify knows nothing of the customer (no member event about them yet)."""


class UnknownTimeZoneError(ValueError):
    """Not an IANA time zone name."""


class StalePreferencesError(Exception):
    """The preferences changed since the caller read them (another person, or a member event):
    the caller reads them again and decides again; nothing was saved."""

    def __init__(self, customer_id: str, current: int) -> None:
        super().__init__(f"preferences of {customer_id!r} changed since read")
        self.current = current


@dataclass(frozen=True)
class UpdatePreferences:
    """What is None stays as it is."""

    customer_id: str
    version: int
    """The version the caller read (`ETag` of `GET /preferences/{id}`): the change is saved
    only over that version."""
    locale: str | None = None
    time_zone: str | None = None
    opted_out: Sequence[str] | None = None
    """The channels the customer refuses (all of them: the list replaces the former one)."""


async def update_preferences(
    command: UpdatePreferences, repository: NotifyRepository, clock: Clock = utc_now
) -> Preferences:
    """Opting out of a channel also cancels the customer's messages waiting on it. A write
    conflict is redone on a fresh read, which finds the preferences changed
    (`StalePreferencesError`) or only a waiting message claimed meanwhile (saved again)."""
    return await retry_on_conflict(lambda: _update_preferences(command, repository, clock))


async def _update_preferences(
    command: UpdatePreferences, repository: NotifyRepository, clock: Clock
) -> Preferences:
    found = (await repository.preferences([command.customer_id])).get(command.customer_id)
    if found is None:
        raise NoPreferencesError(command.customer_id)
    if found.version != command.version:
        raise StalePreferencesError(command.customer_id, found.version)
    if command.locale is not None:
        found.locale = command.locale
    if command.time_zone is not None:
        found.time_zone = command.time_zone
        if zone_of(found).key != command.time_zone:
            raise UnknownTimeZoneError(f"unknown time zone {command.time_zone!r}")
    changes = Changes(preferences={found.customer_id: found})
    if command.opted_out is not None:
        found.opted_out = sorted(set(command.opted_out))
        await cancel_withdrawn(changes, repository, [found.customer_id], clock())
    await repository.save(changes)
    return found
