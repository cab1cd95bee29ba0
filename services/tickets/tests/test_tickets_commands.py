"""The HTTP commands on the in-memory fakes: intake (one ticket per Idempotency-Key, handed to an
agent with room), the actions on a ticket (refused when the status machine or the ticket's limits
say no, redone on a fresh read after losing a race, bringing what is due with them), agents."""

import copy
import re
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from test_tickets_flow import RULES, T0
from tickets_fakes import InMemoryTickets

from crm_tickets import commands
from crm_tickets.domain.agent import Agent, NoAgentError
from crm_tickets.domain.events import Status
from crm_tickets.domain.ticket import (
    InvalidTransitionError,
    NoRootCauseError,
    NoTicketError,
    Ticket,
    TicketFullError,
)

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def repo_with(*agents: Agent) -> InMemoryTickets:
    repo = InMemoryTickets(RULES, T0)
    repo.agents.update((a.agent_id, a) for a in agents)
    return repo


def intake(key: str | None = None, severity: str = "medium") -> commands.OpenTicket:
    return commands.OpenTicket(
        "c1", "包裹破损", "tok-1", category="delivery", severity=severity, key=key
    )


async def opened(repo: InMemoryTickets, clock: Clock, severity: str = "medium") -> Ticket:
    return (await commands.open_ticket(intake(severity=severity), repo, clock, RULES)).ticket


async def test_intake_hands_the_ticket_to_an_agent_with_room_and_stores_its_figures() -> None:
    repo = repo_with(Agent("a1", "Ann", ["delivery"], capacity=1))
    first = await commands.open_ticket(intake(), repo, Clock(), RULES)
    assert (first.ticket.status, first.ticket.assignee, first.replayed) == ("assigned", "a1", False)
    assert repo.agents["a1"].last_assigned_at == T0
    assert repo.published() == ["ticket.opened", "ticket.assigned", "ticket.status_changed"]
    figures = repo.figures[first.ticket.ticket_id]
    # P3: the first response is due in 4 business hours, its warning at 80 %: 3 h 12 min.
    assert figures == first.ticket.figures(T0, RULES)
    assert figures.next_check_at == T0 + timedelta(hours=3, minutes=12)
    second = await commands.open_ticket(intake(), repo, Clock(), RULES)
    assert (second.ticket.status, second.ticket.assignee) == ("new", None)  # a1 is full


async def test_intake_with_a_key_opens_one_ticket_and_a_retry_answers_it() -> None:
    repo = repo_with()
    repo.customer_grades["c1"] = "vip"
    first = await commands.open_ticket(intake("k-1"), repo, Clock(), RULES)
    again = await commands.open_ticket(intake("k-1"), repo, Clock(T0 + timedelta(hours=1)), RULES)
    assert first.ticket.ticket_id == again.ticket.ticket_id == intake("k-1").ticket_id()
    assert (first.replayed, again.replayed) == (False, True)
    assert first.ticket.priority == "P2"  # medium, one level up for a VIP
    assert repo.published() == ["ticket.opened"]


async def test_an_idempotency_key_is_the_caller_s_own() -> None:
    """Issue 18: keys were global, so another caller's same (reused or guessed) key answered
    the first caller's ticket, texts and all. Now the other caller opens a ticket of its own."""
    repo = repo_with()
    mine = await commands.open_ticket(intake("k-1"), repo, Clock(), RULES)
    theirs_command = replace(intake("k-1"), actor="tok-2", customer_id="c2")
    theirs = await commands.open_ticket(theirs_command, repo, Clock(), RULES)
    assert theirs.replayed is False
    assert theirs.ticket.ticket_id != mine.ticket.ticket_id
    assert (theirs.ticket.customer_id, theirs.ticket.description) == ("c2", "包裹破损")
    assert repo.published() == ["ticket.opened", "ticket.opened"]


async def test_a_key_reused_for_another_request_is_refused_and_opens_nothing() -> None:
    repo = repo_with()
    first = await commands.open_ticket(intake("k-1"), repo, Clock(), RULES)
    other = replace(intake("k-1"), description="另一件事")
    with pytest.raises(commands.IdempotencyKeyReusedError, match=r"k-1.*different request"):
        await commands.open_ticket(other, repo, Clock(), RULES)
    assert list(repo.tickets) == [first.ticket.ticket_id]
    assert repo.published() == ["ticket.opened"]


async def test_the_stored_fingerprint_is_a_hash_not_the_request() -> None:
    repo = repo_with()
    done = await commands.open_ticket(intake("k-1"), repo, Clock(), RULES)
    stored = repo.tickets[done.ticket.ticket_id].intake_fingerprint
    assert stored is not None
    assert re.fullmatch(r"[0-9a-f]{64}", stored)  # a SHA-256, not the description
    assert stored == intake("k-1").fingerprint(done.ticket.ticket_id)
    assert (
        await commands.open_ticket(intake(), repo, Clock(), RULES)
    ).ticket.intake_fingerprint is None


async def test_an_intake_that_lost_the_race_for_its_key_answers_the_winner_s_ticket() -> None:
    repo = repo_with()
    command = intake("k-1")
    ticket_id = command.ticket_id()

    def the_same_request_wins() -> None:
        winner, _ = Ticket.open(
            ticket_id, "c1", T0, channel="web", category=None, severity=None, grade=None,
            rules=RULES, actor="tok-1", intake_fingerprint=command.fingerprint(ticket_id),
        )  # fmt: skip
        repo.tickets[ticket_id] = replace(winner, version=1)

    repo.before_save = the_same_request_wins
    done = await commands.open_ticket(command, repo, Clock(), RULES)
    assert (done.replayed, done.ticket.channel) == (True, "web")
    assert repo.saves == 0


async def test_the_actions_move_a_ticket_through_its_life() -> None:
    repo, clock = repo_with(Agent("a1", "Ann", ["delivery"], capacity=0)), Clock()
    ticket_id = (await opened(repo, clock)).ticket_id
    done = await commands.assign(commands.Assign(ticket_id, "a1", "sup"), repo, clock, RULES)
    assert (done.ticket.assignee, done.ticket.status) == ("a1", "assigned")
    clock.now += timedelta(minutes=30)
    done = await commands.comment(
        commands.Comment(ticket_id, "已联系", "a1", public=True), repo, clock, RULES
    )
    assert done.ticket.first_response_at == clock.now
    moves: tuple[Status, ...] = ("in_progress", "waiting_customer", "in_progress")
    for status in moves:
        move = commands.ChangeStatus(ticket_id, status, "a1")
        assert (await commands.change_status(move, repo, clock, RULES)).ticket.status == status
    clock.now += timedelta(hours=1)
    resolution = commands.Resolve(ticket_id, ["carrier", " carrier "], "a1", summary="补发")
    done = await commands.resolve(resolution, repo, clock, RULES)
    assert (done.ticket.status, done.ticket.root_causes) == ("resolved", ["carrier"])
    assert [c.text for c in done.ticket.comments] == ["已联系", "补发"]
    assert repo.figures[ticket_id].resolution_s == 90 * 60
    assert repo.figures[ticket_id].first_response_s == 30 * 60
    reopen = commands.Reopen(ticket_id, "a1", "仍未收到")
    assert (await commands.reopen(reopen, repo, clock, RULES)).ticket.status == "in_progress"
    assert repo.figures[ticket_id].resolution_s is None
    assert repo.published(ticket_id)[-4:] == [
        "ticket.status_changed",
        "ticket.resolved",
        "ticket.reopened",
        "ticket.status_changed",
    ]


async def test_an_assignment_needs_an_existing_agent_and_an_action_an_existing_ticket() -> None:
    repo, clock = repo_with(Agent("a1", "Ann", ["delivery"], capacity=0)), Clock()
    ticket_id = (await opened(repo, clock)).ticket_id
    with pytest.raises(NoAgentError):
        await commands.assign(commands.Assign(ticket_id, "nobody", "sup"), repo, clock, RULES)
    with pytest.raises(NoTicketError):
        await commands.assign(commands.Assign("T-none", "a1", "sup"), repo, clock, RULES)
    with pytest.raises(NoTicketError):
        await commands.comment(commands.Comment("T-none", "x", "a1"), repo, clock, RULES)


async def test_refused_actions_change_and_publish_nothing() -> None:
    repo, clock = repo_with(), Clock()
    ticket_id = (await opened(repo, clock)).ticket_id
    saves, published = repo.saves, repo.published()
    command = commands.ChangeStatus(ticket_id, "in_progress", "a1")
    with pytest.raises(InvalidTransitionError, match="assign it first"):
        await commands.change_status(command, repo, clock, RULES)
    with pytest.raises(NoRootCauseError):
        await commands.resolve(commands.Resolve(ticket_id, [" "], "a1"), repo, clock, RULES)
    with pytest.raises(InvalidTransitionError, match="only a resolved ticket"):
        await commands.reopen(commands.Reopen(ticket_id, "a1"), repo, clock, RULES)
    await commands.resolve(commands.Resolve(ticket_id, ["carrier"], "a1"), repo, clock, RULES)
    clock.now += timedelta(days=RULES.reopen_days, seconds=1)
    with pytest.raises(InvalidTransitionError, match="reopen window"):
        await commands.reopen(commands.Reopen(ticket_id, "a1"), repo, clock, RULES)
    assert repo.saves == saves + 1  # the resolution only
    assert repo.published()[: len(published)] == published
    assert repo.tickets[ticket_id].status == "resolved"


async def test_a_full_ticket_refuses_comments_and_a_summary_but_not_a_plain_resolution() -> None:
    small = replace(RULES, max_comments=1)
    repo, clock = repo_with(), Clock()
    ticket_id = (await opened(repo, clock)).ticket_id
    await commands.comment(commands.Comment(ticket_id, "一", "a1"), repo, clock, small)
    with pytest.raises(TicketFullError, match="open a new ticket"):
        await commands.comment(commands.Comment(ticket_id, "二", "a1"), repo, clock, small)
    with_summary = commands.Resolve(ticket_id, ["x"], "a1", summary="s")
    with pytest.raises(TicketFullError):
        await commands.resolve(with_summary, repo, clock, small)
    done = await commands.resolve(commands.Resolve(ticket_id, ["x"], "a1"), repo, clock, small)
    assert (done.ticket.status, len(done.ticket.comments)) == ("resolved", 1)


async def test_an_action_that_lost_a_race_is_redone_on_a_fresh_read() -> None:
    repo, clock = repo_with(), Clock()
    ticket_id = (await opened(repo, clock)).ticket_id

    def the_consumer_records_a_survey() -> None:
        stored = copy.deepcopy(repo.tickets[ticket_id])
        stored.record_survey("s1", 5, 10, T0, RULES)
        stored.version += 1
        repo.tickets[ticket_id] = stored

    repo.before_save = the_consumer_records_a_survey
    command = commands.Comment(ticket_id, "在查", "a1")
    done = await commands.comment(command, repo, clock, RULES)
    stored = repo.tickets[ticket_id]
    assert stored.survey is not None, "the other writer's change is kept"
    assert [c.comment_id for c in stored.comments] == [command.comment_id], "commented once"
    assert done.ticket.version == stored.version == 3


async def test_an_action_brings_the_sla_changes_that_are_due() -> None:
    repo, clock = repo_with(), Clock()
    ticket_id = (await opened(repo, clock, severity="critical")).ticket_id  # P1: 30 min
    clock.now += timedelta(minutes=25)
    await commands.comment(commands.Comment(ticket_id, "internal", "a1"), repo, clock, RULES)
    assert repo.published(ticket_id)[-1] == "ticket.sla_warning"
    assert repo.tickets[ticket_id].sla["first_response"].warned


async def test_an_agent_is_put_and_deactivated_and_keeps_the_round_robin_s_memory() -> None:
    repo, clock = repo_with(), Clock()
    put = commands.PutAgent("a1", "Ann", ["delivery", "billing", "delivery"], capacity=5)
    assert (await commands.put_agent(put, repo)).queues == ["billing", "delivery"]
    assert (await opened(repo, clock)).assignee == "a1"
    again = await commands.put_agent(replace(put, capacity=9), repo)
    assert (again.capacity, again.last_assigned_at) == (9, T0)
    gone = await commands.deactivate_agent("a1", repo)
    assert (gone.active, repo.agents["a1"].active) == (False, False)
    assert (await opened(repo, clock)).assignee is None
    with pytest.raises(NoAgentError):
        await commands.deactivate_agent("nobody", repo)


async def test_an_empty_key_is_still_a_key_looked_up_before_its_ticket_is_made() -> None:
    """An empty key (what the route no longer lets through) derives an id like any key: the
    second intake with it answers the first ticket instead of colliding with it."""
    repo = repo_with()
    first = await commands.open_ticket(intake(""), repo, Clock(), RULES)
    again = await commands.open_ticket(intake(""), repo, Clock(), RULES)
    assert (again.ticket.ticket_id, again.replayed) == (first.ticket.ticket_id, True)
