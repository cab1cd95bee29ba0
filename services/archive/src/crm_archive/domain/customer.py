"""A customer's record (客户档案) and how each kind of fact changes it.

The record keeps facts (orders, refunds, complaints, surveys, contacts, tickets, tier) and derives
everything else (value, RFM, grade, stage, churn risk) with the pure rules of `rules.py`, so a
replay of the same facts gives the same record. `evaluate(now)` re-derives and reports what
changed as domain events.

A record holds the latest facts in full and keeps the rest apart (ADR 0008, `apart.py`): the
`orders_kept` latest active orders, the `complaints_kept` latest complaints, the `surveys_kept`
latest surveys. The others are one document each, outside the record, and their exact totals
(`Earlier`) are in it; an event that refers to one of them (a refund of an old order, a complaint
announced again) has it `recall`ed first. Which facts are held is a function of the facts (the
latest N), so a rebuild still equals the live record, and no customer's record can grow towards
MongoDB's 16 MB.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from crm_archive.domain.apart import Apart, Earlier
from crm_archive.domain.events import (
    ChurnRiskCleared,
    ChurnRiskRaised,
    Created,
    DomainEvent,
    GradeChanged,
    ProfileChanged,
    StageChanged,
)
from crm_archive.domain.facts import Agreement, Order, Profile, Survey
from crm_archive.domain.rules import (
    ArchiveRules,
    ChurnFacts,
    ChurnReason,
    Grade,
    Stage,
    churn_reasons,
    grade,
    next_review,
    stage,
)
from crm_archive.domain.value import Figures, Value, value_of

AGREEMENTS_KEPT = 20
"""The agreements a record holds: the latest ending (an agreement customer has one or two)."""


class NoCustomerError(LookupError):
    """No record for this customer id."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"no customer {customer_id!r}")
        self.customer_id = customer_id


@dataclass
class Customer:
    id: str
    first_seen_at: datetime
    last_event_at: datetime
    registered_at: datetime | None = None
    profile: Profile = field(default_factory=Profile)
    tags: list[str] = field(default_factory=list)
    consents: dict[str, dict[str, bool]] = field(default_factory=dict)
    account_owner: str | None = None
    erased_at: datetime | None = None
    erasure_request_id: str | None = None
    erasure_confirmations: dict[str, datetime] = field(default_factory=dict)
    """Service -> when it confirmed the erasure (`customer.erasure_completed`)."""
    orders: dict[str, Order] = field(default_factory=dict)
    complaints: dict[str, datetime] = field(default_factory=dict)
    surveys: dict[str, Survey] = field(default_factory=dict)
    contacts: int = 0
    open_tickets: list[str] = field(default_factory=list)
    tickets_resolved: int = 0
    loyalty_tier: str | None = None
    agreements: dict[str, Agreement] = field(default_factory=dict)
    """Agreement id -> its number and dates (`relations.v1`), the `AGREEMENTS_KEPT` latest."""
    earlier: Earlier = field(default_factory=Earlier)
    apart: Apart = field(default_factory=Apart, repr=False)
    # derived, kept for queries and change detection
    stage: Stage | None = None
    grade: Grade | None = None
    churn_reasons: list[ChurnReason] = field(default_factory=list)
    churn_risk_since: datetime | None = None
    next_review_at: datetime | None = None
    figures: Figures = field(default_factory=Figures)
    agreement_numbers: list[str] = field(default_factory=list)
    """The numbers of the agreements active on the evaluation's day (协议客户 when any)."""
    rfm_total: int | None = None
    """R + F + M as of the last evaluation, for sorting lists: a score changes only at a time
    `next_review_at` names, when the review sweep evaluates the record again."""
    version: int = 0
    pending: list[DomainEvent] = field(default_factory=list, repr=False)

    # -- facts --------------------------------------------------------------------------------
    @property
    def stub(self) -> bool:
        return self.registered_at is None

    def seen(self, at: datetime) -> None:
        self.first_seen_at = min(self.first_seen_at, at)
        self.last_event_at = max(self.last_event_at, at)

    def register(
        self,
        at: datetime,
        profile: Profile,
        tags: list[str],
        consents: dict[str, dict[str, bool]],
        owner: str | None,
    ) -> None:
        self.seen(at)
        if self.registered_at is not None and at >= self.registered_at:
            return  # a later duplicate registration changes nothing
        if self.erased_at is not None:
            self.registered_at = at
            return  # an erased customer's personal data is not taken in again
        self.registered_at = at
        self.profile = profile
        self.tags = list(tags)
        self.consents = consents
        if owner is not None:
            self.account_owner = owner

    def update_profile(self, at: datetime, changes: dict[str, object]) -> list[str]:
        """Set profile fields, `tags` and `account_owner` by name; the names that changed. An
        erased customer's personal data (profile fields and tags) is not taken in again."""
        self.seen(at)
        changed: list[str] = []
        for name, value in changes.items():
            if name == "account_owner":
                if value != self.account_owner:
                    self.account_owner = value  # type: ignore[assignment]
                    changed.append(name)
            elif self.erased_at is not None:
                continue  # an erased customer's personal data is not taken in again
            elif name == "tags":
                if value != self.tags:
                    self.tags = list(value)  # type: ignore[call-overload]
                    changed.append(name)
            elif name == "type" and value is None:
                continue  # a customer is always a person or a company
            elif getattr(self.profile, name) != value:
                setattr(self.profile, name, value)
                changed.append(name)
        if changed:
            self.pending.append(ProfileChanged(tuple(sorted(changed))))
        return sorted(changed)

    def change_consent(self, at: datetime, channel: str, purpose: str, granted: bool) -> bool:
        """Whether the consent changed."""
        self.seen(at)
        current = self.consents.setdefault(channel, {})
        if current.get(purpose) == granted:
            return False
        current[purpose] = granted
        self.pending.append(ProfileChanged(("consents",)))
        return True

    def erase(self, at: datetime, request_id: str) -> None:
        """Forget the person (PIPL / GDPR): personal fields and tags go, figures stay."""
        self.seen(at)
        if self.erased_at is None:
            self._forget(at, request_id)
            self.pending.append(ProfileChanged(("erased",)))

    def _forget(self, at: datetime, request_id: str) -> None:
        self.erased_at = at
        self.erasure_request_id = request_id
        self.profile = Profile(type=self.profile.type)  # a person or a company: not personal
        self.tags = []

    def confirm_erasure(self, service: str, at: datetime, request_id: str) -> None:
        """A service confirmed it forgot the customer (not an interaction: `seen` is untouched).

        The archive's own confirmation is kept forever on `privacy.v1` while the request
        (`members.v1`) is kept 30 days: in a rebuild it is what erases the customer again."""
        self.erasure_confirmations.setdefault(service, at)
        if service == "archive" and self.erased_at is None:
            self._forget(at, request_id)

    def place_order(self, order_id: str, at: datetime, amount: Decimal, currency: str) -> None:
        self.seen(at)
        order = self.orders.setdefault(order_id, Order(order_id))
        if order.placed_at is not None:
            return  # the same order announced twice (new event id): counted once
        order.placed_at, order.amount, order.currency = at, amount, currency

    def refund(self, order_id: str, at: datetime, amount: Decimal) -> None:
        self.seen(at)
        order = self.orders.setdefault(order_id, Order(order_id))
        order.refunded += amount

    def cancel(self, order_id: str, at: datetime) -> None:
        self.seen(at)
        self.orders.setdefault(order_id, Order(order_id)).cancelled = True

    def complain(self, complaint_id: str, at: datetime) -> None:
        self.seen(at)
        self.complaints.setdefault(complaint_id, at)

    def answer_survey(
        self, survey_id: str, at: datetime, csat: int | None, nps: int | None
    ) -> None:
        self.seen(at)
        self.surveys.setdefault(survey_id, Survey(at, csat, nps))

    def log_contact(self, at: datetime) -> None:
        self.seen(at)
        self.contacts += 1

    def ticket_opened(self, ticket_id: str, at: datetime) -> None:
        self.seen(at)
        if ticket_id not in self.open_tickets:
            self.open_tickets.append(ticket_id)

    def ticket_resolved(self, ticket_id: str, at: datetime) -> None:
        self.seen(at)
        if ticket_id in self.open_tickets:
            self.open_tickets.remove(ticket_id)
        self.tickets_resolved += 1

    def tier_changed(self, tier: str, at: datetime) -> None:
        self.seen(at)
        self.loyalty_tier = tier

    def task_completed(self, at: datetime, outcome: str) -> None:
        """A follow-up task done in relations: a contact by staff, unless nobody was reached."""
        self.seen(at)
        if outcome != "not_reached":
            self.contacts += 1

    def agreement_made(
        self, agreement_id: str, number: str, starts_on: date, ends_on: date, at: datetime
    ) -> None:
        """An agreement created (the same one announced again changes nothing new)."""
        self.seen(at)
        self.agreements[agreement_id] = Agreement(number, starts_on, ends_on)

    def agreement_dates(
        self, agreement_id: str, at: datetime, *, ends_on: date, starts_on: date | None = None
    ) -> None:
        """An agreement amended, renewed or terminated: its new dates (an agreement the record
        no longer holds is not taken in again: it ended long ago)."""
        self.seen(at)
        agreement = self.agreements.get(agreement_id)
        if agreement is None:
            return
        self.agreements[agreement_id] = replace(
            agreement, starts_on=starts_on or agreement.starts_on, ends_on=ends_on
        )

    def agreement_terminated(self, agreement_id: str, on: date, at: datetime) -> None:
        """An agreement terminated: it ends on `on` (if it did not end earlier)."""
        held = self.agreements.get(agreement_id)
        if held is not None:
            self.agreement_dates(agreement_id, at, ends_on=min(held.ends_on, on))
        else:
            self.seen(at)

    # -- derived ------------------------------------------------------------------------------
    @property
    def complaint_count(self) -> int:
        return len(self.complaints) + self.earlier.complaints

    def active_orders(self) -> list[Order]:
        """The active orders the record holds (see `value` for every order's totals)."""
        return [o for o in self.orders.values() if o.active]

    def value(self, now: datetime, rules: ArchiveRules) -> Value:
        return value_of(self.active_orders(), self.surveys.values(), self.earlier, now, rules)

    def evaluate(self, now: datetime, rules: ArchiveRules) -> list[DomainEvent]:
        """Re-derive grade, stage, churn risk and the `figures` as of `now`; return (and clear)
        what changed. First the record keeps apart what it no longer holds in full (`compact`).
        A record is evaluated before it is saved."""
        self.compact(rules)
        value = self.value(now, rules)
        self.figures = value.figures
        self.rfm_total = value.rfm.total
        times = [o.placed_at for o in self.active_orders() if o.placed_at is not None]
        new_grade = grade(value.order_count, value.rfm, rules)
        if new_grade != self.grade:
            self.pending.append(GradeChanged(new_grade, self.grade))
            self.grade = new_grade
        earlier_first = self.earlier.first_order_at if self.earlier.orders else None
        new_stage = stage(
            times, now, rules, earlier=self.earlier.orders, earlier_first=earlier_first
        )
        if new_stage != self.stage:
            self.pending.append(StageChanged(new_stage, self.stage))
            self.stage = new_stage
        reasons = churn_reasons(
            ChurnFacts(
                order_times=times,
                complaint_times=list(self.complaints.values()),
                surveys=[(s.at, s.csat) for s in self.surveys.values() if s.csat is not None],
            ),
            now,
            rules,
        )
        if reasons and not self.churn_reasons:
            self.pending.append(ChurnRiskRaised(tuple(reasons), min(reasons.values())))
        elif not reasons and self.churn_reasons:
            last = max(times, default=None)
            since = self.churn_risk_since
            cleared_by = "order.placed" if last and since and last >= since else "expired"
            self.pending.append(ChurnRiskCleared(cleared_by))
        self.churn_reasons = sorted(reasons)
        self.churn_risk_since = min(reasons.values()) if reasons else None
        zone = ZoneInfo(rules.time_zone)
        today = now.astimezone(zone).date()
        self.agreement_numbers = sorted(
            a.number for a in self.agreements.values() if a.starts_on <= today <= a.ends_on
        )
        reviews = [
            next_review(
                times, list(self.complaints.values()), now, rules, earlier_first=earlier_first
            ),
            *_agreement_changes(self.agreements.values(), today, zone),
        ]
        self.next_review_at = min((r for r in reviews if r is not None), default=None)
        events, self.pending = self.pending, []
        return events

    # -- what the record holds in full, and what it keeps apart ------------------------------
    def recall(
        self,
        *,
        orders: Iterable[Order] = (),
        complaints: Iterable[tuple[str, datetime]] = (),
        surveys: Iterable[tuple[str, Survey]] = (),
        first_orders: bool = False,
    ) -> None:
        """Take back facts kept apart (as stored) before a batch refers to them: they are held
        again until `compact`, their totals leave `earlier` (an order's at `compact`, which
        knows the base currency). `first_orders`: the earliest active orders kept apart are
        among them (loaded because orders may be cancelled)."""
        for order in orders:
            if order.order_id in self.orders:
                continue
            self.orders[order.order_id] = order
            self.apart.recalled_orders[order.order_id] = replace(order)
            self.apart.recalled.add(("order", order.order_id))
        for complaint_id, at in complaints:
            if complaint_id not in self.complaints:
                self.complaints[complaint_id] = at
                self.earlier.complaints -= 1
                self.apart.recalled.add(("complaint", complaint_id))
        for survey_id, survey in surveys:
            if survey_id not in self.surveys:
                self.surveys[survey_id] = survey
                self.earlier.count_survey(survey, -1)
                self.apart.recalled.add(("survey", survey_id))
        self.apart.first_recalled = self.apart.first_recalled or first_orders

    def compact(self, rules: ArchiveRules) -> None:
        """Hold the latest facts in full, keep the others apart (with their totals in
        `earlier`): the `orders_kept` latest active orders (an inactive order — refunded before
        it was placed, or cancelled — is only kept apart), the `complaints_kept` latest
        complaints, the `surveys_kept` latest surveys, the `open_tickets_kept` latest open
        tickets."""
        apart, earlier = self.apart, self.earlier
        for stored in apart.recalled_orders.values():
            earlier.count_order(stored, rules.base_currency, -1)
        apart.recalled_orders.clear()
        ranked = sorted(
            (o for o in self.orders.values() if o.active),
            key=lambda o: (o.placed_at, o.order_id),
            reverse=True,
        )
        held = {o.order_id for o in ranked[: rules.orders_kept]}
        if apart.first_recalled:  # the first ones kept apart are here: recount from them
            earlier.first_order_at = None
            apart.first_recalled = False
        for order_id, order in list(self.orders.items()):
            if order_id in held:
                self._held("order", order_id)
                continue
            del self.orders[order_id]
            self._kept_apart("order", order_id)
            apart.orders[order_id] = order
            earlier.count_order(order, rules.base_currency, +1)
            if order.active and order.placed_at is not None:
                first = earlier.first_order_at
                earlier.first_order_at = (
                    order.placed_at if first is None else min(first, order.placed_at)
                )
        if not earlier.orders:
            earlier.first_order_at = None
        recalled = {kind for kind, _ in apart.recalled}
        if len(self.complaints) > rules.complaints_kept or "complaint" in recalled:
            latest = sorted(self.complaints.items(), key=lambda c: (c[1], c[0]), reverse=True)
            for complaint_id, at in latest[rules.complaints_kept :]:
                del self.complaints[complaint_id]
                self._kept_apart("complaint", complaint_id)
                apart.complaints[complaint_id] = at
                earlier.complaints += 1
            for complaint_id, _ in latest[: rules.complaints_kept]:
                self._held("complaint", complaint_id)
        if len(self.surveys) > rules.surveys_kept or "survey" in recalled:
            answered = sorted(self.surveys.items(), key=lambda s: (s[1].at, s[0]), reverse=True)
            for survey_id, survey in answered[rules.surveys_kept :]:
                del self.surveys[survey_id]
                self._kept_apart("survey", survey_id)
                apart.surveys[survey_id] = survey
                earlier.count_survey(survey, +1)
            for survey_id, _ in answered[: rules.surveys_kept]:
                self._held("survey", survey_id)
        if len(self.agreements) > AGREEMENTS_KEPT:
            by_end = sorted(self.agreements.items(), key=lambda a: (a[1].ends_on, a[0]))
            self.agreements = dict(by_end[-AGREEMENTS_KEPT:])
        if len(self.open_tickets) > rules.open_tickets_kept:
            del self.open_tickets[: len(self.open_tickets) - rules.open_tickets_kept]

    def _kept_apart(self, kind: str, fact_id: str) -> None:
        if (kind, fact_id) in self.apart.recalled:
            self.apart.recalled.discard((kind, fact_id))  # stored there already
        else:
            self.earlier.stored += 1

    def _held(self, kind: str, fact_id: str) -> None:
        if (kind, fact_id) in self.apart.recalled:  # held again: no longer apart
            self.apart.recalled.discard((kind, fact_id))
            self.apart.back.append((kind, fact_id))
            self.earlier.stored -= 1

    def saved(self) -> None:
        """The repository stored the record and what it keeps apart."""
        self.version += 1
        self.apart = Apart()

    @staticmethod
    def first_sighting(customer_id: str, at: datetime, cause: str) -> "Customer":
        """A record for a customer seen for the first time (a stub unless `cause` registers)."""
        customer = Customer(
            id=customer_id, first_seen_at=at, last_event_at=at, stage="potential", grade="potential"
        )
        customer.pending.append(Created("potential", cause != "customer.registered", cause))
        return customer


def _agreement_changes(
    agreements: Iterable[Agreement], today: date, zone: ZoneInfo
) -> list[datetime]:
    """When an agreement next starts or ends (the midnight after its last day), in `zone`."""
    found: list[datetime] = []
    for agreement in agreements:
        if agreement.starts_on > today:
            found.append(_midnight(agreement.starts_on, zone))
        if agreement.ends_on >= today:
            found.append(_midnight(agreement.ends_on + timedelta(days=1), zone))
    return found


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
