"""Who hears about what, over which channel, and when: preferences, consent, quiet hours, caps.

Pure code. `decide` answers for one intended message: send now, defer until a time, await the
customer's registration, or suppress (with the reason); `recheck` asks again right before the
send (a consent withdrawn since then cancels it; quiet hours defer it). The rules are
documented with examples in the service README; `NotifyRules` is declared here once and nested
in the settings: `CRM_NOTIFY_RULES__DAILY_CAP=5`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from crm_runtime.bounds import within

Channel = Literal["email", "sms", "webhook"]
Purpose = Literal["transactional", "marketing", "staff"]
Status = Literal["queued", "deferred", "sending", "sent", "failed", "suppressed", "cancelled"]


DEFAULT_TIME_ZONE = "Asia/Shanghai"
"""A customer's time zone until the member system names one."""


@dataclass
class Preferences:
    """What we know of a customer for messaging: addresses, locale, zone, consents, opt-outs."""

    customer_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    birthday: date | None = None
    locale: str = "zh-CN"
    time_zone: str = DEFAULT_TIME_ZONE
    consents: dict[str, dict[str, bool]] = field(default_factory=dict)
    opted_out: list[str] = field(default_factory=list)
    registered: bool = False
    version: int = 0
    """Of the stored preferences (0: not stored yet); every write checks it and adds one, so a
    staff change and a member event never silently undo each other (`ETag` over HTTP)."""

    def forget(self) -> None:
        """An erasure: nothing is kept but the customer id (and no consent: nothing is sent)."""
        fresh = Preferences(self.customer_id, version=self.version)
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    def address(self, channel: Channel) -> str | None:
        return self.email if channel == "email" else self.phone if channel == "sms" else None

    def consents_to(self, channel: Channel, purpose: Purpose) -> bool:
        """Transactional: unless refused for the channel. Marketing: only an explicit opt-in."""
        given = self.consents.get(channel, {})
        if purpose == "marketing":
            return given.get("marketing", False) is True
        return given.get("transactional", True) is not False

    def refusal(self, channel: Channel, purpose: Purpose) -> str | None:
        """Why a message for `purpose` may not go over `channel` (no address aside), or None."""
        if channel in self.opted_out:
            return f"{channel}:opted_out"
        if not self.consents_to(channel, purpose):
            return f"{channel}:no_consent"
        return None


@dataclass(frozen=True)
class NotifyRules:
    quiet_start: time = time(21, 0)
    quiet_end: time = time(9, 0)
    daily_cap: int = 3
    """Messages per customer per local day, transactional ones not counted."""
    channels: dict[str, tuple[Channel, ...]] = field(
        default_factory=lambda: {"transactional": ("email", "sms"), "marketing": ("email", "sms")}
    )
    max_attempts: int = 8
    retry_initial_s: float = 5.0
    retry_max_s: float = 900.0
    registration_wait_s: float = 600.0
    """How long a customer message waits for the registration of a customer notify has never
    heard of (the member system's event may come after the complaint's, on another topic);
    0: suppressed at once, as `unknown_customer`."""
    max_age_s: float = 259_200.0
    """A customer message whose cause happened longer ago than this (3 days) is suppressed as
    `stale`: a backlog caught up after an outage, or a shop's history loaded into the suite,
    does not mail customers about what is long past. 0: never stale."""

    def __post_init__(self) -> None:
        within("daily_cap", self.daily_cap, ge=0)
        within("max_attempts", self.max_attempts, ge=1)
        within("retry_initial_s", self.retry_initial_s, gt=0)
        within("retry_max_s", self.retry_max_s, gt=0)
        within("registration_wait_s", self.registration_wait_s, ge=0)
        within("max_age_s", self.max_age_s, ge=0)

    def is_stale(self, occurred_at: datetime | None, now: datetime) -> bool:
        """Whether a message caused at `occurred_at` is too late to send at `now`."""
        if occurred_at is None or self.max_age_s <= 0:
            return False
        return (now - occurred_at).total_seconds() > self.max_age_s  # `inf`: never

    def is_quiet(self, local: time) -> bool:
        if self.quiet_start > self.quiet_end:  # over midnight: 21:00-09:00
            return local >= self.quiet_start or local < self.quiet_end
        return self.quiet_start <= local < self.quiet_end

    def quiet_ends(self, now: datetime, zone: ZoneInfo) -> datetime:
        """The first moment at or after `now` outside quiet hours, in the customer's zone."""
        local = now.astimezone(zone)
        if not self.is_quiet(local.time()):
            return now
        end = datetime.combine(local.date(), self.quiet_end, tzinfo=zone)
        if end <= local:
            end += timedelta(days=1)
        return end

    def retry_delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.retry_max_s, self.retry_initial_s * 2 ** (attempts - 1)))


STALE = "stale"
"""The reason a message is suppressed when its cause is older than `NotifyRules.max_age_s`."""

AWAITING_REGISTRATION = "awaiting_registration"
"""The reason a message waits, `deferred` without a send time, for its customer's registration."""


@dataclass(frozen=True)
class Decision:
    action: Literal["send", "defer", "await", "suppress", "cancel"]
    channel: Channel | None = None
    reason: str | None = None
    send_at: datetime | None = None


def zone_of(preferences: Preferences) -> ZoneInfo:
    return zone_named(preferences.time_zone)


def zone_named(time_zone: str | None) -> ZoneInfo:
    """The zone of that name; the default one (Asia/Shanghai) when it is unknown or None."""
    try:
        return ZoneInfo(time_zone or DEFAULT_TIME_ZONE)
    except (KeyError, ValueError):
        return ZoneInfo(DEFAULT_TIME_ZONE)


def decide(
    preferences: Preferences | None,
    purpose: Purpose,
    now: datetime,
    sent_today: int,
    rules: NotifyRules,
    *,
    may_await: bool = True,
    occurred_at: datetime | None = None,
) -> Decision:
    """For a customer message: not about what is long past (`occurred_at`, its cause's time,
    older than `max_age_s`: `stale`); the first channel with an address, consent and no
    opt-out; then the daily cap; then quiet hours (marketing is deferred, transactional is not).

    A customer the member system has never spoken of (no stored preferences) is awaited: the
    message waits `registration_wait_s` for the registration (`send_at`: when it stops waiting),
    unless `may_await` is false (its wait is over). A customer known but not registered (erased)
    is suppressed at once."""
    if rules.is_stale(occurred_at, now):
        return Decision("suppress", reason=STALE)
    if preferences is None or not preferences.registered:
        never_heard_of = preferences is None or preferences.version == 0
        if may_await and never_heard_of and rules.registration_wait_s > 0:
            until = now + timedelta(seconds=rules.registration_wait_s)
            return Decision("await", reason=AWAITING_REGISTRATION, send_at=until)
        return Decision("suppress", reason="unknown_customer")
    refusals = []
    chosen: Channel | None = None
    for channel in rules.channels.get(purpose, ("email",)):
        refused = preferences.refusal(channel, purpose)
        if refused is not None:
            refusals.append(refused)
        elif preferences.address(channel) is None:
            refusals.append(f"{channel}:no_address")
        else:
            chosen = channel
            break
    if chosen is None:
        return Decision("suppress", reason=", ".join(refusals) or "no_channel")
    if purpose != "transactional" and sent_today >= rules.daily_cap:
        return Decision("suppress", chosen, reason="daily_cap")
    if purpose == "marketing":
        start = rules.quiet_ends(now, zone_of(preferences))
        if start > now:
            return Decision("defer", chosen, reason="quiet_hours", send_at=start)
    return Decision("send", chosen, send_at=now)


def recheck(
    preferences: Preferences | None,
    purpose: Purpose,
    channel: Channel | None,
    now: datetime,
    rules: NotifyRules,
    *,
    occurred_at: datetime | None = None,
) -> Decision:
    """Right before a decided message is sent: may it still go over its channel, and now?

    A message whose cause is by now older than `max_age_s` (a notify that was down for days
    comes back to what it had queued) is cancelled as `stale`. A consent withdrawn or a channel
    opted out since the decision cancels it (the reason as in `decide`); a customer no longer
    registered (erased) too. Marketing inside quiet hours (a retry that lands at night, a time
    zone changed) is deferred to their end. The channel and the daily cap stay as decided;
    staff alerts are not the customer's to refuse, nor aged.
    """
    if purpose == "staff" or channel is None:
        return Decision("send", channel, send_at=now)
    if rules.is_stale(occurred_at, now):
        return Decision("cancel", channel, reason=STALE)
    if preferences is None or not preferences.registered:
        return Decision("cancel", channel, reason="unknown_customer")
    refused = preferences.refusal(channel, purpose)
    if refused is not None:
        return Decision("cancel", channel, reason=refused)
    if purpose == "marketing":
        start = rules.quiet_ends(now, zone_of(preferences))
        if start > now:
            return Decision("defer", channel, reason="quiet_hours", send_at=start)
    return Decision("send", channel, send_at=now)
