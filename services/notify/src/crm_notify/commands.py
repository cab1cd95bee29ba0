"""What staff ask of notify over HTTP: change a customer's locale, time zone and opt-outs. Plain
functions over the `NotifyRepository` port (`update_preferences(command, repository)`), saved
with its one `save(changes)`: unit tests run them on the in-memory fakes.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from crm_notify.domain.policy import Preferences, zone_of
from crm_notify.ports import Changes, NotifyRepository


class NoPreferencesError(LookupError):
    """Notify knows nothing of the customer (no member event about them yet)."""


class UnknownTimeZoneError(ValueError):
    """Not an IANA time zone name."""


@dataclass(frozen=True)
class UpdatePreferences:
    """What is None stays as it is."""

    customer_id: str
    locale: str | None = None
    time_zone: str | None = None
    opted_out: Sequence[str] | None = None
    """The channels the customer refuses (all of them: the list replaces the former one)."""


async def update_preferences(
    command: UpdatePreferences, repository: NotifyRepository
) -> Preferences:
    found = (await repository.preferences([command.customer_id])).get(command.customer_id)
    if found is None:
        raise NoPreferencesError(command.customer_id)
    if command.locale is not None:
        found.locale = command.locale
    if command.time_zone is not None:
        found.time_zone = command.time_zone
        if zone_of(found).key != command.time_zone:
            raise UnknownTimeZoneError(f"unknown time zone {command.time_zone!r}")
    if command.opted_out is not None:
        found.opted_out = sorted(set(command.opted_out))
    await repository.save(Changes(preferences={found.customer_id: found}))
    return found
