"""A customer's points digest: what they earned on one local day, sent as one message once that
day has closed in their time zone."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

LATEST_DAY_END = timedelta(days=1, hours=12)
"""How long after its UTC midnight a calendar day has ended everywhere: the last zone to end it
is UTC−12 (its midnight is 12:00 UTC the next day)."""


@dataclass
class Digest:
    """Points earned by a customer on one local day (`day`, in their time zone), sent as one
    message once the day has closed there (`closes_at`).

    `closes_at` and `opened_by` are set when the stored digest is made (the first addition) and
    kept by later additions. Digests stored before they existed have neither: their day is taken
    as closed when it has ended in every zone (`closes`)."""

    customer_id: str
    day: date
    points: int = 0
    orders: int = 0
    balance: int = 0
    closes_at: datetime | None = None
    """The UTC instant the customer's local `day` ends: the sweep sends the digest after it."""
    opened_by: str | None = None
    """The id of the event whose points made the stored digest: it names a digest made after
    its day's message was sent (late points) apart from the one before (`cause`)."""

    @property
    def digest_id(self) -> str:
        return f"{self.customer_id}/{self.day.isoformat()}"

    @property
    def closes(self) -> datetime:
        """When the day has closed: `closes_at`, or for a digest stored without it, when the
        day has ended in every zone (the next day 12:00 UTC, midnight at UTC−12)."""
        if self.closes_at is not None:
            return self.closes_at
        return datetime.combine(self.day, time(0), tzinfo=UTC) + LATEST_DAY_END

    def cause(self, day_sent: bool) -> str:
        """What this digest's message derives its id from. The day's first message is caused by
        `digest/<customer>/<day>`; when that message exists already (`day_sent`: points that
        arrived after their day's digest was sent, e.g. a delayed `points.earned`), this digest
        is a later part, `digest/<customer>/<day>/<opened_by>`. The event that made this stored
        digest is applied once (the inbox), so each stored digest has its own part, the same on
        every sweep that reads it (a redone sweep makes nothing twice). A digest stored before
        `opened_by` existed is the part `late`."""
        first = f"digest/{self.digest_id}"
        return f"{first}/{self.opened_by or 'late'}" if day_sent else first


def day_closes(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant the local `day` ends in `zone` (its next midnight there)."""
    midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return midnight.astimezone(UTC)
