"""A ticket's document stays far below MongoDB's 16 MB (past it, every later change of the ticket
would fail and its events be dead-lettered): people get a 409 at the comment and history limits,
the system's own changes and the events for the ticket still apply."""

import os
from dataclasses import replace
from datetime import timedelta

import bson
import pytest
from test_tickets_flow import RULES, T0

from crm_runtime.crypto import FieldCipher
from crm_tickets.adapters.documents import to_document
from crm_tickets.domain.rules import TicketRules
from crm_tickets.domain.ticket import Change, Comment, Ticket, TicketFullError
from crm_tickets.settings import TicketsSettings

pytestmark = pytest.mark.unit
MAX_BSON = 16 * 1024 * 1024
SMALL = replace(RULES, max_comments=2, max_history=5)


def new_ticket(ticket_id: str = "T-1") -> Ticket:
    ticket, _ = Ticket.open(
        ticket_id,
        "c1",
        T0,
        channel="phone",
        category="delivery",
        severity="high",
        grade=None,
        rules=RULES,
        actor="a1",
        description="d",
    )
    return ticket


def test_a_person_cannot_add_a_comment_beyond_the_limit() -> None:
    ticket = new_ticket()
    for n in range(2):
        ticket.ensure_room(SMALL, comment=True)
        ticket.comment(f"m{n}", "a1", "text", T0, public=False)
    with pytest.raises(TicketFullError, match="2 comments, the most a ticket holds; open a new"):
        ticket.ensure_room(SMALL, comment=True)
    ticket.ensure_room(SMALL)  # an action without a comment still has room


def test_at_the_history_limit_people_get_a_409_and_events_still_apply() -> None:
    ticket = new_ticket()
    ticket.assign("a1", "sup", T0, manual=True)
    ticket.change_status("in_progress", "a1", T0)
    ticket.change_status("waiting_customer", "a1", T0)
    ticket.change_status("in_progress", "a1", T0)  # 5 lines
    with pytest.raises(TicketFullError, match="history is full"):
        ticket.ensure_room(SMALL)
    changes = ticket.record_survey("s1", 1, 3, T0 + timedelta(hours=1), SMALL)
    assert changes  # the survey is recorded and announced
    assert ticket.survey is not None
    assert ticket.flagged_for_review
    assert len(ticket.history) == 5
    assert ticket.history_omitted == 1
    ticket.resolve(["x"], "a1", T0 + timedelta(hours=2))  # (past ensure_room: as the sweep would)
    ticket.review(T0 + timedelta(days=30), SMALL)  # auto-close: applied, its lines omitted
    assert ticket.status == "closed"
    assert len(ticket.history) == 5
    assert ticket.history_omitted == 3


@pytest.mark.parametrize(
    ("max_comments", "max_history"),
    [(RULES.max_comments, RULES.max_history), (300, 2000)],  # the defaults; the settings' maxima
)
def test_the_largest_ticket_allowed_stays_under_16_mb(max_comments: int, max_history: int) -> None:
    """Every text at its longest (10,000 CJK characters: 30 kB sealed), root causes and reasons
    at theirs, as many comments and history lines as the limits allow."""
    ticket = new_ticket()
    longest = "长" * 10_000
    ticket.description = longest
    ticket.comments = [
        Comment(f"m{n:04d}", T0, "agent-" + "x" * 100, longest, True) for n in range(max_comments)
    ]
    causes = [f"{n:02d}" + "c" * 98 for n in range(20)]
    ticket.history = [
        Change(T0, "agent-" + "x" * 100, "resolved", {"root_causes": causes, "summary": True})
        if n % 2
        else Change(T0, "agent-" + "x" * 100, "reopened", {"reason": "理" * 500})
        for n in range(max_history)
    ]
    ticket.status_log = [(T0, "in_progress")] * (2 * max_history)
    ticket.root_causes = causes
    figures = ticket.figures(T0, RULES)
    document = to_document(ticket, figures, FieldCipher("c1", os.urandom(32)))
    size = len(bson.encode(document))
    print(f"{max_comments} comments, {max_history} lines: {size / 1e6:.1f} MB")
    assert size < 0.9 * MAX_BSON, f"{size / 1e6:.1f} MB"


def test_the_limits_are_settings_bounded_below_16_mb() -> None:
    assert TicketsSettings().rules.max_comments == 200
    assert TicketsSettings().rules.max_history == 1000
    with pytest.raises(ValueError, match="less than or equal to 300"):
        TicketsSettings(rules=TicketRules(max_comments=301))
