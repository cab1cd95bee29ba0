"""A complaint ticket: status machine, comments, root causes, SLA clocks, survey — and its history.

The SLA clocks are derived from the status log, never stored as running totals: the elapsed time
of a target is the sum of the business seconds of the intervals in which the ticket was open and
not waiting for the customer (`new`, `assigned`, `in_progress`), up to now, or up to the first
response for the first-response target. A policy or calendar change re-evaluates the same history.
Pure code: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from crm_tickets.domain.events import (
    Assigned,
    Closed,
    CsatRecorded,
    DomainEvent,
    Escalated,
    Opened,
    Reopened,
    Resolved,
    SlaBreached,
    SlaWarning,
    Status,
    StatusChanged,
)
from crm_tickets.domain.rules import SUPERVISOR_QUEUE, Priority, SlaTarget, TicketRules

RUNNING: frozenset[str] = frozenset({"new", "assigned", "in_progress"})
OPEN: frozenset[str] = frozenset({"new", "assigned", "in_progress", "waiting_customer"})
TARGETS: tuple[SlaTarget, ...] = ("first_response", "resolution")
MANUAL_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "assigned": ("in_progress",),
    "in_progress": ("waiting_customer",),
    "waiting_customer": ("in_progress",),
    "resolved": ("closed",),
}


class InvalidTransitionError(Exception):
    """A change the status machine does not allow (HTTP 409)."""


class TicketFullError(InvalidTransitionError):
    """The ticket holds as many comments, or history lines, as a ticket may (HTTP 409)."""


class NoRootCauseError(ValueError):
    """A resolution without a root-cause tag (HTTP 422)."""


class NoTicketError(LookupError):
    """No ticket of that id (HTTP 404)."""


# -- the ticket -------------------------------------------------------------------------------
@dataclass
class Comment:
    comment_id: str
    at: datetime
    author: str
    text: str
    public: bool


@dataclass
class Change:
    """One line of the history: who did what, when."""

    at: datetime
    actor: str
    action: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class SlaState:
    warned: bool = False
    breached: bool = False


@dataclass
class Survey:
    survey_id: str
    at: datetime
    csat: int | None
    nps: int | None


@dataclass(frozen=True)
class TicketFigures:
    """What the store keeps beside a ticket for the reports (business seconds to first response
    and to resolution, once there) and for the SLA sweep (when to look again)."""

    first_response_s: int | None
    resolution_s: int | None
    next_check_at: datetime | None


@dataclass
class Ticket:
    ticket_id: str
    customer_id: str
    opened_at: datetime
    channel: str
    category: str
    severity: str
    priority: Priority
    queue: str
    status: Status = "new"
    complaint_id: str | None = None
    order_id: str | None = None
    description: str = ""
    intake_fingerprint: str | None = None
    """A manual intake with an Idempotency-Key: the hash of what it asked (no plaintext), which
    a retry with the same key must match; None otherwise, and once the customer is erased."""
    assignee: str | None = None
    comments: list[Comment] = field(default_factory=list)
    root_causes: list[str] = field(default_factory=list)
    history: list[Change] = field(default_factory=list)
    status_log: list[tuple[datetime, Status]] = field(default_factory=list)
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    sla: dict[str, SlaState] = field(default_factory=dict)
    escalated: bool = False
    survey: Survey | None = None
    flagged_for_review: bool = False
    history_omitted: int = 0
    """Lines of system changes not written because the history was full."""
    agreement_first_response_s: int | None = None
    """The first response the customer's agreement promised when the ticket opened (business
    seconds; `agreement.first_response_s`): the target when stricter than the priority's."""
    version: int = 0

    @staticmethod
    def open(
        ticket_id: str,
        customer_id: str,
        at: datetime,
        *,
        channel: str,
        category: str | None,
        severity: str | None,
        grade: str | None,
        rules: TicketRules,
        actor: str,
        complaint_id: str | None = None,
        order_id: str | None = None,
        description: str = "",
        intake_fingerprint: str | None = None,
        agreement_first_response_s: int | None = None,
    ) -> tuple[Ticket, list[DomainEvent]]:
        category = category or rules.default_category
        severity = severity or rules.default_severity
        priority = rules.priority(severity, grade)
        ticket = Ticket(
            ticket_id=ticket_id,
            customer_id=customer_id,
            opened_at=at,
            channel=channel,
            category=category,
            severity=severity,
            priority=priority,
            queue=rules.queue(category),
            complaint_id=complaint_id,
            order_id=order_id,
            description=description,
            intake_fingerprint=intake_fingerprint,
            status_log=[(at, "new")],
            sla={target: SlaState() for target in TARGETS},
            agreement_first_response_s=agreement_first_response_s,
        )
        ticket._log(
            at,
            actor,
            "opened",
            priority=priority,
            category=category,
            severity=severity,
            customer_grade=grade,
            queue=ticket.queue,
            **(
                {"agreement_first_response_s": agreement_first_response_s}
                if agreement_first_response_s is not None
                else {}
            ),
        )
        return ticket, [Opened()]

    # -- limits: a ticket's document stays far below MongoDB's 16 MB ----------------------------
    def ensure_room(self, rules: TicketRules, *, comment: bool = False) -> None:
        """Before a person's action: refuse it when the history (or, for an action that adds a
        comment, the comments) is full. The system's own changes are never refused."""
        if comment and len(self.comments) >= rules.max_comments:
            raise TicketFullError(
                f"ticket {self.ticket_id} has {len(self.comments)} comments, the most a ticket "
                "holds; open a new ticket to go on"
            )
        if len(self.history) >= rules.max_history:
            raise TicketFullError(
                f"ticket {self.ticket_id}'s history is full ({len(self.history)} changes, the "
                "most a ticket holds); open a new ticket to go on"
            )

    def _cap_history(self, rules: TicketRules) -> None:
        """Lines of system changes beyond the limit are omitted, and counted."""
        extra = len(self.history) - rules.max_history
        if extra > 0:
            del self.history[rules.max_history :]
            self.history_omitted += extra

    # -- the status machine -------------------------------------------------------------------
    def assign(self, assignee: str, actor: str, at: datetime, *, manual: bool) -> list[DomainEvent]:
        if self.status not in OPEN:
            raise InvalidTransitionError(f"a {self.status} ticket cannot be assigned; reopen it")
        if assignee == self.assignee:
            return []
        self.assignee = assignee
        self._log(at, actor, "assigned", assignee=assignee, manual=manual)
        events: list[DomainEvent] = [Assigned(assignee, manual)]
        if self.status == "new":
            events.append(self._set_status("assigned", at))
        return events

    def change_status(self, to: Status, actor: str, at: datetime) -> list[DomainEvent]:
        allowed = MANUAL_TRANSITIONS.get(self.status, ())
        if to not in allowed:
            hint = f"allowed: {', '.join(allowed)}" if allowed else "no manual change is allowed"
            if self.status == "new":
                hint = "assign it first"
            raise InvalidTransitionError(f"a {self.status} ticket cannot become {to} ({hint})")
        self._log(at, actor, "status", status=to, previous=self.status)
        events: list[DomainEvent] = [self._set_status(to, at)]
        if to == "waiting_customer":
            self._responded(at)
        if to == "closed":
            self.closed_at = at
            events.append(Closed(auto=False))
        return events

    def comment(
        self, comment_id: str, author: str, text: str, at: datetime, *, public: bool
    ) -> list[DomainEvent]:
        if self.status == "closed":
            raise InvalidTransitionError("a closed ticket takes no comments")
        self.comments.append(Comment(comment_id, at, author, text, public))
        self._log(at, author, "commented", comment_id=comment_id, public=public)
        if public:
            self._responded(at)
        return []

    def resolve(
        self, root_causes: list[str], actor: str, at: datetime, summary: str | None = None
    ) -> list[DomainEvent]:
        if self.status not in OPEN:
            raise InvalidTransitionError(f"a {self.status} ticket cannot be resolved")
        causes = sorted({c.strip() for c in root_causes if c.strip()})
        if not causes:
            raise NoRootCauseError("a ticket is resolved with at least one root-cause tag")
        self.root_causes = causes
        self.resolved_at = at
        self._responded(at)
        self._log(at, actor, "resolved", root_causes=causes, summary=bool(summary))
        if summary:
            self.comments.append(
                Comment(f"resolution-{len(self.comments)}", at, actor, summary, True)
            )
        return [self._set_status("resolved", at), Resolved()]

    def reopen(
        self, reason: str | None, actor: str, at: datetime, rules: TicketRules
    ) -> list[DomainEvent]:
        if self.status != "resolved" or self.resolved_at is None:
            raise InvalidTransitionError(
                f"only a resolved ticket can be reopened (it is {self.status})"
            )
        if at - self.resolved_at > timedelta(days=rules.reopen_days):
            raise InvalidTransitionError(
                f"the reopen window of {rules.reopen_days} days has passed; open a new ticket"
            )
        self.resolved_at = None
        self._log(at, actor, "reopened", reason=reason)
        to: Status = "in_progress" if self.assignee else "new"
        return [Reopened(reason), self._set_status(to, at)]

    def record_survey(
        self, survey_id: str, csat: int | None, nps: int | None, at: datetime, rules: TicketRules
    ) -> list[DomainEvent]:
        if self.survey is not None and self.survey.survey_id == survey_id:
            return []
        self.survey = Survey(survey_id, at, csat, nps)
        flagged = csat is not None and csat <= rules.low_csat
        self.flagged_for_review = self.flagged_for_review or flagged
        self._log(at, "customer", "survey", survey_id=survey_id, csat=csat, nps=nps)
        self._cap_history(rules)
        return [CsatRecorded(survey_id, csat, nps, flagged)]

    # -- time ---------------------------------------------------------------------------------
    def target(self, which: SlaTarget, rules: TicketRules) -> int:
        """The target in business seconds: the priority's; for the first response the
        customer's agreement's instead when it is stricter."""
        limit = rules.target(self.priority, which)
        promised = self.agreement_first_response_s
        if which == "first_response" and promised is not None:
            return min(limit, promised)
        return limit

    def elapsed(self, target: SlaTarget, now: datetime, rules: TicketRules) -> int:
        """Business seconds the target's clock has run: open, not waiting for the customer."""
        end = now
        if target == "first_response" and self.first_response_at is not None:
            end = min(end, self.first_response_at)
        total = 0
        starts = [at for at, _ in self.status_log]
        for (at, status), until in zip(self.status_log, [*starts[1:], end], strict=True):
            if status in RUNNING:
                total += rules.calendar.working_seconds(at, min(until, end))
        return total

    def clock_running(self, target: SlaTarget) -> bool:
        if target == "first_response" and self.first_response_at is not None:
            return False
        return self.status in RUNNING

    def review(self, now: datetime, rules: TicketRules) -> list[DomainEvent]:
        """The sweep: warnings at the warning share, breaches (with escalation), auto-close."""
        events = self._review(now, rules)
        self._cap_history(rules)
        return events

    def _review(self, now: datetime, rules: TicketRules) -> list[DomainEvent]:
        events: list[DomainEvent] = []
        if self.status == "resolved" and self.resolved_at is not None:
            if now - self.resolved_at >= timedelta(days=rules.auto_close_days):
                self._log(now, "system", "closed", auto=True)
                events.append(self._set_status("closed", now))
                self.closed_at = now
                events.append(Closed(auto=True))
            return events
        for target in TARGETS:
            state = self.sla[target]
            if state.breached or not self.clock_running(target):
                continue
            limit = self.target(target, rules)
            elapsed = self.elapsed(target, now, rules)
            if elapsed >= limit * rules.warning_share and not state.warned:
                state.warned = True
                self._log(now, "system", "sla_warning", target=target, elapsed_s=elapsed)
                events.append(SlaWarning(target, self.due_at(target, now, rules, elapsed), elapsed))
            if elapsed >= limit:
                state.breached = True
                self._log(now, "system", "sla_breached", target=target, elapsed_s=elapsed)
                events.append(
                    SlaBreached(target, self.due_at(target, now, rules, elapsed), elapsed)
                )
                if self.queue != SUPERVISOR_QUEUE:
                    previous = self.queue
                    self.queue, self.escalated = SUPERVISOR_QUEUE, True
                    reason = f"{target} SLA breached"
                    self._log(now, "system", "escalated", queue=self.queue, previous=previous)
                    events.append(Escalated(self.queue, reason))
        return events

    def next_check_at(self, now: datetime, rules: TicketRules) -> datetime | None:
        """When the sweep should look again: the next warning or breach, or the auto-close."""
        if self.status == "resolved" and self.resolved_at is not None:
            return self.resolved_at + timedelta(days=rules.auto_close_days)
        moments = []
        for target in TARGETS:
            state = self.sla[target]
            if state.breached or not self.clock_running(target):
                continue
            limit = self.target(target, rules)
            elapsed = self.elapsed(target, now, rules)
            goal = limit if state.warned else int(limit * rules.warning_share)
            moments.append(rules.calendar.add_working(now, max(0, goal - elapsed)))
        return min(moments, default=None)

    @property
    def breached(self) -> bool:
        return any(state.breached for state in self.sla.values())

    def figures(self, now: datetime, rules: TicketRules) -> TicketFigures:
        """The figures as of `now`; those of a stopped clock do not change with `now`."""
        first, resolved = self.first_response_at, self.resolved_at
        return TicketFigures(
            first_response_s=self.elapsed("first_response", first, rules) if first else None,
            resolution_s=self.elapsed("resolution", resolved, rules) if resolved else None,
            next_check_at=self.next_check_at(now, rules),
        )

    def due_at(
        self, target: SlaTarget, now: datetime, rules: TicketRules, elapsed: int
    ) -> datetime:
        """When the target falls due, its clock having run `elapsed` business seconds by `now`."""
        remaining = self.target(target, rules) - elapsed
        return rules.calendar.add_working(now, remaining) if remaining > 0 else now

    # -- internals ----------------------------------------------------------------------------
    def _responded(self, at: datetime) -> None:
        if self.first_response_at is None:
            self.first_response_at = at

    def _set_status(self, to: Status, at: datetime) -> StatusChanged:
        previous, self.status = self.status, to
        self.status_log.append((at, to))
        return StatusChanged(to, previous)

    def _log(self, at: datetime, actor: str, action: str, **details: Any) -> None:
        self.history.append(Change(at, actor, action, details))
