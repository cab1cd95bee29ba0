"""A customer's record (客户档案) and how each kind of fact changes it.

The record keeps facts (orders, refunds, complaints, surveys, contacts, tickets, tier) and derives
everything else (value, RFM, grade, stage, churn risk) with the pure rules of `rules.py`, so a
replay of the same facts gives the same record. `evaluate(now)` re-derives and reports what
changed as domain events.
"""

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from crm_archive.domain.rules import (
    ArchiveRules,
    ChurnFacts,
    ChurnReason,
    Grade,
    OrderFact,
    Rfm,
    Stage,
    churn_reasons,
    csat,
    grade,
    next_review,
    nps,
    rfm,
    stage,
)

CENT = Decimal("0.01")


@dataclass
class Profile:
    """Who the customer is. Personal data: read and written in one place (the repository)."""

    name: str | None = None
    phone: str | None = None
    email: str | None = None
    birthday: date | None = None
    gender: str | None = None
    city: str | None = None
    source: str | None = None


@dataclass
class Order:
    order_id: str
    placed_at: datetime | None = None
    """None while only a refund or cancellation of it was seen (out-of-order delivery)."""
    amount: Decimal = Decimal(0)
    currency: str | None = None
    refunded: Decimal = Decimal(0)
    cancelled: bool = False

    @property
    def active(self) -> bool:
        return self.placed_at is not None and not self.cancelled

    @property
    def net(self) -> Decimal:
        """Amount minus refunds, never below zero."""
        return max(Decimal(0), self.amount - self.refunded)


@dataclass(frozen=True)
class Survey:
    at: datetime
    csat: int | None
    nps: int | None


@dataclass(frozen=True)
class Created:
    stage: Stage
    stub: bool
    cause: str


@dataclass(frozen=True)
class ProfileChanged:
    fields: tuple[str, ...]


@dataclass(frozen=True)
class GradeChanged:
    grade: Grade
    previous: Grade | None


@dataclass(frozen=True)
class StageChanged:
    stage: Stage
    previous: Stage | None


@dataclass(frozen=True)
class ChurnRiskRaised:
    reasons: tuple[ChurnReason, ...]
    at: datetime


@dataclass(frozen=True)
class ChurnRiskCleared:
    cleared_by: str


DomainEvent = (
    Created | ProfileChanged | GradeChanged | StageChanged | ChurnRiskRaised | ChurnRiskCleared
)


@dataclass
class Value:
    order_count: int
    net_spent: Decimal
    foreign_spent: dict[str, Decimal]
    first_order_at: datetime | None
    last_order_at: datetime | None
    average_order_value: Decimal | None
    rfm: Rfm
    nps: int | None
    csat: Decimal | None
    surveys: int


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
    # derived, kept for queries and change detection
    stage: Stage | None = None
    grade: Grade | None = None
    churn_reasons: list[ChurnReason] = field(default_factory=list)
    churn_risk_since: datetime | None = None
    next_review_at: datetime | None = None
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

    def update_profile(self, at: datetime, changes: dict[str, object]) -> None:
        self.seen(at)
        changed: list[str] = []
        for name, value in changes.items():
            if name == "tags":
                if value != self.tags:
                    self.tags = list(value)  # type: ignore[call-overload]
                    changed.append(name)
            elif name == "account_owner":
                if value != self.account_owner:
                    self.account_owner = value  # type: ignore[assignment]
                    changed.append(name)
            elif self.erased_at is not None:
                continue  # an erased customer's personal data is not taken in again
            elif getattr(self.profile, name) != value:
                setattr(self.profile, name, value)
                changed.append(name)
        if changed:
            self.pending.append(ProfileChanged(tuple(sorted(changed))))

    def change_consent(self, at: datetime, channel: str, purpose: str, granted: bool) -> None:
        self.seen(at)
        current = self.consents.setdefault(channel, {})
        if current.get(purpose) != granted:
            current[purpose] = granted
            self.pending.append(ProfileChanged(("consents",)))

    def erase(self, at: datetime, request_id: str) -> None:
        """Forget the person (PIPL / GDPR): personal fields and tags go, figures stay."""
        self.seen(at)
        if self.erased_at is None:
            self._forget(at, request_id)
            self.pending.append(ProfileChanged(("erased",)))

    def _forget(self, at: datetime, request_id: str) -> None:
        self.erased_at = at
        self.erasure_request_id = request_id
        self.profile = Profile()
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

    # -- derived ------------------------------------------------------------------------------
    def active_orders(self) -> list[Order]:
        return [o for o in self.orders.values() if o.active]

    def value(self, now: datetime, rules: ArchiveRules) -> Value:
        active = self.active_orders()
        base = [o for o in active if o.currency == rules.base_currency]
        net = sum((o.net for o in base), Decimal(0))
        foreign: dict[str, Decimal] = {}
        for o in active:
            if o.currency != rules.base_currency and o.currency is not None:
                foreign[o.currency] = foreign.get(o.currency, Decimal(0)) + o.net
        times = [o.placed_at for o in active if o.placed_at is not None]
        facts = [OrderFact(o.placed_at, o.net) for o in base if o.placed_at is not None]
        answered = sorted(self.surveys.values(), key=lambda s: s.at)
        return Value(
            order_count=len(active),
            net_spent=net,
            foreign_spent=foreign,
            first_order_at=min(times, default=None),
            last_order_at=max(times, default=None),
            average_order_value=(
                (net / len(base)).quantize(CENT, rounding=ROUND_HALF_UP) if base else None
            ),
            rfm=rfm(facts, now, rules),
            nps=nps([s.nps for s in answered if s.nps is not None]),
            csat=csat([s.csat for s in answered if s.csat is not None]),
            surveys=len(answered),
        )

    def evaluate(self, now: datetime, rules: ArchiveRules) -> list[DomainEvent]:
        """Re-derive grade, stage and churn risk as of `now`; return (and clear) what changed."""
        value = self.value(now, rules)
        times = [o.placed_at for o in self.active_orders() if o.placed_at is not None]
        new_grade = grade(value.order_count, value.rfm, rules)
        if new_grade != self.grade:
            self.pending.append(GradeChanged(new_grade, self.grade))
            self.grade = new_grade
        new_stage = stage(times, now, rules)
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
        self.next_review_at = next_review(times, list(self.complaints.values()), now, rules)
        events, self.pending = self.pending, []
        return events

    @staticmethod
    def first_sighting(customer_id: str, at: datetime, cause: str) -> "Customer":
        """A record for a customer seen for the first time (a stub unless `cause` registers)."""
        customer = Customer(
            id=customer_id, first_seen_at=at, last_event_at=at, stage="potential", grade="potential"
        )
        customer.pending.append(Created("potential", cause != "customer.registered", cause))
        return customer
