"""The tickets API (port 8082): intake, the status machine, agents, SLA and root-cause reports.

Routes translate: a request becomes a command (`commands`) or a query (`queries`), and a domain
error its status code. They see the ports, never the Mongo repository (an import-linter contract).
"""

from collections.abc import Awaitable, Iterable
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crm_runtime.auth import USER_ID_PATTERN, Authenticator, Principal
from crm_runtime.paging import DEFAULT_LIMIT, MAX_LIMIT, Page, after_id, id_cursor
from crm_runtime.sweeps import Clock
from crm_tickets import commands, queries
from crm_tickets.domain.agent import NoAgentError
from crm_tickets.domain.events import Status
from crm_tickets.domain.rules import Priority, TicketRules
from crm_tickets.domain.satisfaction import Interval
from crm_tickets.domain.ticket import InvalidTransitionError, NoRootCauseError, NoTicketError
from crm_tickets.entrypoints.views import AgentView, agent_view, summary_view, ticket_view
from crm_tickets.ports import TicketRepository
from crm_tickets.queries import ReportRangeError, TicketFilter, TicketQueries, TicketSummary

TicketId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\s]+$")]
AgentId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
NewAgentId = Annotated[
    str, Path(pattern=USER_ID_PATTERN, description="The agent's user id (who signs in as it).")
]
ME = "me"
"""`GET /tickets?assignee=me`: the signed-in user's tickets (an agent's id is its user id)."""
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Text = Annotated[str, Field(min_length=1, max_length=10_000)]
Tag = Annotated[str, Field(min_length=1, max_length=100)]
RANGE_REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"description": "`since` not before `until`, or a range over the cap."}
}


class TicketRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\s]+$")
    channel: Literal["phone", "chat", "wechat", "email", "web", "store", "other"] = "phone"
    category: Literal["product", "delivery", "service", "billing", "other"] | None = None
    severity: Literal["low", "medium", "high", "critical"] | None = None
    description: Text
    order_id: str | None = Field(default=None, min_length=1, max_length=128)


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: str = Field(min_length=1, max_length=128)


class CommentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Text
    public: bool = Field(default=False, description="Seen by the customer (counts as a response).")


class StatusRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root_causes: list[Tag] = Field(min_length=1, max_length=20)
    summary: str | None = Field(default=None, max_length=10_000)


class ReopenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


class AgentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    queues: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(min_length=1)
    capacity: int = Field(ge=0, le=1000)
    active: bool = True


class Repository(TicketRepository, TicketQueries, Protocol):
    """What the routes need: the commands' repository and the read side."""


class Audit(Protocol):
    """Where reads of personal data are recorded (`crm_runtime.audit.PiiAudit`)."""

    async def record(
        self, principal: Principal, route: str, customer_ids: Iterable[str]
    ) -> None: ...


def tickets_router(
    repository: Repository,
    auth: Authenticator,
    audit: Audit,
    rules: TicketRules,
    clock: Clock,
    *,
    report_max_days: int = 366,
) -> APIRouter:
    """The whole API: tickets, the actions on them, agents, reports."""
    router = APIRouter()
    router.include_router(ticket_routes(repository, auth, audit, rules, clock))
    router.include_router(action_routes(repository, auth, audit, rules, clock))
    router.include_router(agent_routes(repository, auth))
    router.include_router(report_routes(repository, auth, rules, clock, report_max_days))
    return router


# -- tickets --------------------------------------------------------------------------------
def ticket_routes(
    repository: Repository, auth: Authenticator, audit: Audit, rules: TicketRules, clock: Clock
) -> APIRouter:
    router = APIRouter(tags=["tickets"])
    reader = auth.require("agent", "supervisor", "ops")
    intake = auth.require("agent", "supervisor", "integration")

    @router.post(
        "/tickets",
        status_code=201,
        summary="Manual intake; a caller's retry with its Idempotency-Key opens one ticket.",
        responses={
            200: {"description": "A retry with the caller's Idempotency-Key: the first ticket."},
            422: {"description": "The caller's Idempotency-Key was used for another request."},
        },
    )
    async def create_ticket(
        request: TicketRequest,
        principal: Annotated[Principal, Depends(intake)],
        response: Response,
        key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                min_length=1,
                max_length=100,
                pattern=r"^[^\s]+$",
                description="The caller's own: its retries open one ticket; another caller's "
                "same key opens another.",
            ),
        ] = None,
    ) -> dict[str, Any]:
        command = commands.OpenTicket(
            customer_id=request.customer_id,
            description=request.description,
            actor=principal.user,
            channel=request.channel,
            category=request.category,
            severity=request.severity,
            order_id=request.order_id,
            key=key,
        )
        try:
            done = await commands.open_ticket(command, repository, clock, rules)
        except commands.IdempotencyKeyReusedError as exc:
            raise HTTPException(422, str(exc)) from exc
        if done.replayed:  # the stored ticket, with what was added since: a read
            await audit.record(principal, "POST /tickets", [done.ticket.customer_id])
            response.status_code = 200
        return ticket_view(done.ticket, done.at, rules)

    @router.get("/tickets/{ticket_id}", summary="A ticket, its SLA and history.")
    async def get_ticket(
        ticket_id: TicketId, principal: Annotated[Principal, Depends(reader)]
    ) -> dict[str, Any]:
        ticket = await repository.get(ticket_id)
        if ticket is None:
            raise HTTPException(404, f"no ticket {ticket_id!r}")
        await audit.record(principal, "GET /tickets/{ticket_id}", [ticket.customer_id])
        return ticket_view(ticket, clock(), rules)

    @router.get(
        "/tickets",
        summary="Find tickets, each with its SLA clocks (due times, breached); paged by cursor.",
    )
    async def list_tickets(
        principal: Annotated[Principal, Depends(reader)],
        status: Status | None = None,
        priority: Priority | None = None,
        queue: Annotated[str | None, Query(max_length=100)] = None,
        assignee: Annotated[
            str | None,
            Query(max_length=128, description="An agent's id (its user id), or `me`."),
        ] = None,
        customer_id: Annotated[str | None, Query(max_length=128)] = None,
        breached: bool | None = None,
        flagged: bool | None = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[TicketSummary]:
        if assignee == ME:
            assignee = principal.user
        where = TicketFilter(status, priority, queue, assignee, customer_id, breached, flagged)
        found = await repository.find(where, after_id(cursor), limit)
        now = clock()
        items = [summary_view(ticket, now, rules) for ticket in found]
        next_cursor = id_cursor(found[-1].ticket_id if found else None, len(found), limit)
        return Page[TicketSummary](items=items, next_cursor=next_cursor)

    return router


# -- actions on a ticket: each answers with the ticket and its texts, an audited read ---------
def action_routes(
    repository: Repository, auth: Authenticator, audit: Audit, rules: TicketRules, clock: Clock
) -> APIRouter:
    router = APIRouter(tags=["tickets"])
    worker = auth.require("agent", "supervisor")

    async def answer(
        principal: Principal, route: str, command: Awaitable[commands.Done]
    ) -> dict[str, Any]:
        try:
            done = await command
        except NoTicketError as exc:
            raise HTTPException(404, f"no ticket {exc.args[0]!r}") from exc
        except NoAgentError as exc:
            raise HTTPException(422, f"no agent {exc.args[0]!r}; create it under /agents") from exc
        except InvalidTransitionError as exc:  # not allowed now, or the ticket is full
            raise HTTPException(409, str(exc)) from exc
        except NoRootCauseError as exc:
            raise HTTPException(422, str(exc)) from exc
        await audit.record(principal, route, [done.ticket.customer_id])
        return ticket_view(done.ticket, done.at, rules)

    @router.post("/tickets/{ticket_id}/assign", summary="Manual assignment.")
    async def assign(
        ticket_id: TicketId,
        request: AssignRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> dict[str, Any]:
        command = commands.Assign(ticket_id, request.assignee, principal.user)
        return await answer(
            principal,
            "POST /tickets/{ticket_id}/assign",
            commands.assign(command, repository, clock, rules),
        )

    @router.post("/tickets/{ticket_id}/comment", summary="Internal or public.")
    async def comment(
        ticket_id: TicketId,
        request: CommentRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> dict[str, Any]:
        command = commands.Comment(ticket_id, request.text, principal.user, request.public)
        return await answer(
            principal,
            "POST /tickets/{ticket_id}/comment",
            commands.comment(command, repository, clock, rules),
        )

    @router.post("/tickets/{ticket_id}/status", summary="Move the ticket on.")
    async def change_status(
        ticket_id: TicketId,
        request: StatusRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> dict[str, Any]:
        command = commands.ChangeStatus(ticket_id, request.status, principal.user)
        return await answer(
            principal,
            "POST /tickets/{ticket_id}/status",
            commands.change_status(command, repository, clock, rules),
        )

    @router.post("/tickets/{ticket_id}/resolve", summary="With root causes.")
    async def resolve(
        ticket_id: TicketId,
        request: ResolveRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> dict[str, Any]:
        command = commands.Resolve(ticket_id, request.root_causes, principal.user, request.summary)
        return await answer(
            principal,
            "POST /tickets/{ticket_id}/resolve",
            commands.resolve(command, repository, clock, rules),
        )

    @router.post("/tickets/{ticket_id}/reopen", summary="Within the window.")
    async def reopen(
        ticket_id: TicketId,
        request: ReopenRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> dict[str, Any]:
        command = commands.Reopen(ticket_id, principal.user, request.reason)
        return await answer(
            principal,
            "POST /tickets/{ticket_id}/reopen",
            commands.reopen(command, repository, clock, rules),
        )

    return router


# -- agents ---------------------------------------------------------------------------------
def agent_routes(repository: Repository, auth: Authenticator) -> APIRouter:
    router = APIRouter(tags=["agents"])
    reader = auth.require("agent", "supervisor", "ops")
    supervisor = auth.require("supervisor")

    @router.get(
        "/agents",
        summary="Agents, their queues, capacity and load.",
        dependencies=[Depends(reader)],
    )
    async def list_agents() -> list[AgentView]:
        return [agent_view(a) for a in await queries.agents(repository)]

    @router.get("/agents/{agent_id}", dependencies=[Depends(reader)])
    async def get_agent(agent_id: AgentId) -> AgentView:
        agent = await repository.agent(agent_id)
        if agent is None:
            raise HTTPException(404, f"no agent {agent_id!r}")
        return agent_view(await queries.with_load(repository, agent))

    @router.put(
        "/agents/{agent_id}",
        summary="Create or replace (supervisor).",
        dependencies=[Depends(supervisor)],
    )
    async def put_agent(agent_id: NewAgentId, request: AgentRequest) -> AgentView:
        command = commands.PutAgent(
            agent_id, request.name, request.queues, request.capacity, request.active
        )
        agent = await commands.put_agent(command, repository)
        return agent_view(await queries.with_load(repository, agent))

    @router.delete(
        "/agents/{agent_id}", summary="Deactivate (supervisor).", dependencies=[Depends(supervisor)]
    )
    async def delete_agent(agent_id: AgentId) -> AgentView:
        try:
            agent = await commands.deactivate_agent(agent_id, repository)
        except NoAgentError as exc:
            raise HTTPException(404, f"no agent {agent_id!r}") from exc
        return agent_view(await queries.with_load(repository, agent))

    return router


# -- reports --------------------------------------------------------------------------------
def report_routes(
    repository: Repository, auth: Authenticator, rules: TicketRules, clock: Clock, max_days: int
) -> APIRouter:
    router = APIRouter(tags=["reports"])
    reporter = auth.require("supervisor", "ops")

    def period(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
        try:
            return queries.report_range(since, until, clock(), max_days)
        except ReportRangeError as exc:
            raise HTTPException(422, str(exc)) from exc

    @router.get(
        "/reports/sla",
        summary="Breach rate and mean times.",
        responses=RANGE_REFUSED,
        dependencies=[Depends(reporter)],
    )
    async def sla_report(
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
    ) -> dict[str, Any]:
        return await queries.sla(repository, *period(since, until))

    @router.get(
        "/reports/root-causes",
        summary="Complaints by category and root cause.",
        responses=RANGE_REFUSED,
        dependencies=[Depends(reporter)],
    )
    async def root_causes(
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
    ) -> dict[str, Any]:
        return await queries.root_causes(repository, *period(since, until))

    @router.get(
        "/reports/satisfaction",
        summary="CSAT and NPS per week or month (in the business calendar's zone).",
        description="Per period: the surveys answered, the mean CSAT (1-5) and its count, NPS "
        "(% promoters 9-10 minus % detractors 0-6, of the answers with a score) and its "
        "responses. By default the last twelve weeks or months (at most the report cap).",
        responses=RANGE_REFUSED,
        dependencies=[Depends(reporter)],
    )
    async def satisfaction_report(
        interval: Interval = "week",
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
    ) -> dict[str, Any]:
        try:
            start, end = queries.satisfaction_range(since, until, interval, clock(), max_days)
        except ReportRangeError as exc:
            raise HTTPException(422, str(exc)) from exc
        return await queries.satisfaction(repository, start, end, interval, rules.calendar.zone)

    return router
