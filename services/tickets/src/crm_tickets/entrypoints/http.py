"""The tickets API (port 8082): intake, the status machine, agents, SLA and root-cause reports."""

import math
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crm_runtime.audit import PiiAudit
from crm_runtime.auth import Authenticator, Principal
from crm_runtime.errors import retry_on_conflict
from crm_runtime.paging import DEFAULT_LIMIT, MAX_LIMIT, Page, after_id, id_cursor, present
from crm_tickets import queries
from crm_tickets.adapters.mongo import MongoTicketRepository
from crm_tickets.domain.rules import Priority, TicketRules
from crm_tickets.domain.ticket import InvalidTransitionError, Status, Ticket, TicketEvent
from crm_tickets.handlers import Agent, Assigner, derived_ticket_id, to_messages

TicketId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\s]+$")]
AgentId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Text = Annotated[str, Field(min_length=1, max_length=10_000)]
Tag = Annotated[str, Field(min_length=1, max_length=100)]


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


class AgentView(BaseModel):
    id: str
    name: str
    queues: list[str]
    capacity: int
    active: bool
    open_tickets: int


def ticket_view(ticket: Ticket, now: datetime, rules: TicketRules) -> dict[str, Any]:
    return {
        "id": ticket.ticket_id,
        "customer_id": ticket.customer_id,
        "status": ticket.status,
        "priority": ticket.priority,
        "severity": ticket.severity,
        "category": ticket.category,
        "channel": ticket.channel,
        "queue": ticket.queue,
        "assignee": ticket.assignee,
        "complaint_id": ticket.complaint_id,
        "order_id": ticket.order_id,
        "description": ticket.description,
        "opened_at": ticket.opened_at,
        "first_response_at": ticket.first_response_at,
        "resolved_at": ticket.resolved_at,
        "closed_at": ticket.closed_at,
        "root_causes": ticket.root_causes,
        "escalated": ticket.escalated,
        "sla": ticket.sla_view(now, rules),
        "survey": (
            {
                "survey_id": ticket.survey.survey_id,
                "at": ticket.survey.at,
                "csat": ticket.survey.csat,
                "nps": ticket.survey.nps,
            }
            if ticket.survey
            else None
        ),
        "flagged_for_review": ticket.flagged_for_review,
        "history_omitted": ticket.history_omitted,
        "comments": [
            {"id": c.comment_id, "at": c.at, "author": c.author, "text": c.text, "public": c.public}
            for c in ticket.comments
        ],
        "history": [
            {"at": h.at, "actor": h.actor, "action": h.action, "details": h.details}
            for h in ticket.history
        ],
    }


def tickets_router(
    repository: MongoTicketRepository,
    auth: Authenticator,
    audit: PiiAudit,
    rules: TicketRules,
    clock: Callable[[], datetime],
    *,
    report_max_days: int = 366,
) -> APIRouter:
    router = APIRouter()
    reader = auth.require("agent", "supervisor", "ops")
    worker = auth.require("agent", "supervisor")
    intake = auth.require("agent", "supervisor", "integration")
    supervisor = auth.require("supervisor")
    reporter = auth.require("supervisor", "ops")

    async def load(ticket_id: str) -> Ticket:
        ticket = await repository.get(ticket_id)
        if ticket is None:
            raise HTTPException(404, f"no ticket {ticket_id!r}")
        return ticket

    async def act(
        principal: Principal,
        route: str,
        ticket_id: str,
        action: Callable[[Ticket, datetime], list[TicketEvent]],
        *,
        comments: bool = False,
    ) -> dict[str, Any]:
        """Apply an agent's action (`comments`: one that adds a comment) if the ticket has room
        for it; the answer shows the ticket's texts, so it is audited."""

        async def attempt() -> dict[str, Any]:
            ticket = await load(ticket_id)
            now = clock()
            try:
                ticket.ensure_room(rules, comment=comments)
                changes = action(ticket, now)
            except InvalidTransitionError as exc:
                raise HTTPException(409, str(exc)) from exc
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from exc
            changes = [*changes, *ticket.review(now, rules)]
            cause = f"api/{uuid.uuid4()}"
            await repository.save([ticket], [], to_messages(ticket, changes, cause))
            return ticket_view(ticket, now, rules)

        view = await retry_on_conflict(attempt)
        await audit.record(principal, route, [view["customer_id"]])
        return view

    # -- tickets ------------------------------------------------------------------------------
    @router.post("/tickets", status_code=201, tags=["tickets"], summary="Manual intake.")
    async def create_ticket(
        request: TicketRequest,
        principal: Annotated[Principal, Depends(intake)],
        key: Annotated[
            str | None,
            Header(alias="Idempotency-Key", max_length=100, description="Retries open one ticket."),
        ] = None,
    ) -> dict[str, Any]:
        now = clock()
        if key:
            ticket_id = derived_ticket_id("manual", key)
            existing = await repository.get(ticket_id)
            if existing is not None:  # the stored ticket, with what was added since: a read
                await audit.record(principal, "POST /tickets", [existing.customer_id])
                return ticket_view(existing, now, rules)
        else:
            ticket_id = "T-" + uuid.uuid4().hex[:12]
        grade = (await repository.grades([request.customer_id])).get(request.customer_id)
        ticket, changes = Ticket.open(
            ticket_id,
            request.customer_id,
            now,
            channel=request.channel,
            category=request.category,
            severity=request.severity,
            grade=grade,
            rules=rules,
            actor=principal.token_id,
            order_id=request.order_id,
            description=request.description,
        )
        assigner = Assigner(repository)
        agent = await assigner.pick(ticket.queue, now)
        if agent is not None:
            changes += ticket.assign(agent.agent_id, "system", now, manual=False)
        await repository.save(
            [ticket],
            [],
            to_messages(ticket, changes, f"api/{ticket_id}"),
            agents=list(assigner.touched.values()),
        )
        return ticket_view(ticket, now, rules)

    @router.get("/tickets/{ticket_id}", tags=["tickets"], summary="A ticket, its SLA and history.")
    async def get_ticket(
        ticket_id: TicketId, principal: Annotated[Principal, Depends(reader)]
    ) -> dict[str, Any]:
        ticket = await load(ticket_id)
        await audit.record(principal, "GET /tickets/{ticket_id}", [ticket.customer_id])
        return ticket_view(ticket, clock(), rules)

    @router.get("/tickets", tags=["tickets"], summary="Find tickets; paged by cursor.")
    async def list_tickets(
        principal: Annotated[Principal, Depends(reader)],
        status: Status | None = None,
        priority: Priority | None = None,
        queue: Annotated[str | None, Query(max_length=100)] = None,
        assignee: Annotated[str | None, Query(max_length=128)] = None,
        customer_id: Annotated[str | None, Query(max_length=128)] = None,
        breached: bool | None = None,
        flagged: bool | None = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        filters = present(
            status=status,
            priority=priority,
            queue=queue,
            assignee=assignee,
            customer_id=customer_id,
            breached=breached,
            flagged_for_review=flagged,
        )
        docs = await repository.find(filters, after_id(cursor), limit)
        items = [
            {
                "id": d["_id"],
                "customer_id": d["customer_id"],
                "status": d["status"],
                "priority": d["priority"],
                "category": d["category"],
                "queue": d["queue"],
                "assignee": d.get("assignee"),
                "opened_at": d["opened_at"],
                "breached": d.get("breached", False),
                "flagged_for_review": d.get("flagged_for_review", False),
            }
            for d in docs
        ]
        next_cursor = id_cursor(items[-1]["id"] if items else None, len(items), limit)
        return Page[dict[str, Any]](items=items, next_cursor=next_cursor)

    @router.post("/tickets/{ticket_id}/assign", tags=["tickets"], summary="Manual assignment.")
    async def assign(
        ticket_id: TicketId,
        request: AssignRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> dict[str, Any]:
        if await repository.agent(request.assignee) is None:
            raise HTTPException(422, f"no agent {request.assignee!r}; create it under /agents")
        return await act(
            principal,
            "POST /tickets/{ticket_id}/assign",
            ticket_id,
            lambda t, now: t.assign(request.assignee, principal.token_id, now, manual=True),
        )

    @router.post("/tickets/{ticket_id}/comment", tags=["tickets"], summary="Internal or public.")
    async def comment(
        ticket_id: TicketId,
        request: CommentRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> dict[str, Any]:
        comment_id = uuid.uuid4().hex[:12]
        return await act(
            principal,
            "POST /tickets/{ticket_id}/comment",
            ticket_id,
            lambda t, now: t.comment(
                comment_id, principal.token_id, request.text, now, public=request.public
            ),
            comments=True,
        )

    @router.post("/tickets/{ticket_id}/status", tags=["tickets"], summary="Move the ticket on.")
    async def change_status(
        ticket_id: TicketId,
        request: StatusRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> dict[str, Any]:
        return await act(
            principal,
            "POST /tickets/{ticket_id}/status",
            ticket_id,
            lambda t, now: t.change_status(request.status, principal.token_id, now),
        )

    @router.post("/tickets/{ticket_id}/resolve", tags=["tickets"], summary="With root causes.")
    async def resolve(
        ticket_id: TicketId,
        request: ResolveRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> dict[str, Any]:
        return await act(
            principal,
            "POST /tickets/{ticket_id}/resolve",
            ticket_id,
            lambda t, now: t.resolve(request.root_causes, principal.token_id, now, request.summary),
            comments=bool(request.summary),
        )

    @router.post("/tickets/{ticket_id}/reopen", tags=["tickets"], summary="Within the window.")
    async def reopen(
        ticket_id: TicketId,
        request: ReopenRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> dict[str, Any]:
        return await act(
            principal,
            "POST /tickets/{ticket_id}/reopen",
            ticket_id,
            lambda t, now: t.reopen(request.reason, principal.token_id, now, rules),
        )

    # -- agents -------------------------------------------------------------------------------
    def agent_view(agent: Agent, open_tickets: int) -> AgentView:
        return AgentView(
            id=agent.agent_id,
            name=agent.name,
            queues=agent.queues,
            capacity=agent.capacity,
            active=agent.active,
            open_tickets=open_tickets,
        )

    async def with_load(agent: Agent) -> AgentView:
        loads = await repository.open_load([agent.agent_id])
        return agent_view(agent, loads.get(agent.agent_id, 0))

    @router.get("/agents", tags=["agents"], summary="Agents, their queues, capacity and load.")
    async def list_agents(principal: Annotated[Principal, Depends(reader)]) -> list[AgentView]:
        agents = await repository.all_agents()
        loads = await repository.open_load([a.agent_id for a in agents])
        return [agent_view(a, loads.get(a.agent_id, 0)) for a in agents]

    @router.get("/agents/{agent_id}", tags=["agents"])
    async def get_agent(
        agent_id: AgentId, principal: Annotated[Principal, Depends(reader)]
    ) -> AgentView:
        agent = await repository.agent(agent_id)
        if agent is None:
            raise HTTPException(404, f"no agent {agent_id!r}")
        return await with_load(agent)

    @router.put("/agents/{agent_id}", tags=["agents"], summary="Create or replace (supervisor).")
    async def put_agent(
        agent_id: AgentId,
        request: AgentRequest,
        principal: Annotated[Principal, Depends(supervisor)],
    ) -> AgentView:
        existing = await repository.agent(agent_id)
        agent = Agent(
            agent_id,
            request.name,
            sorted(set(request.queues)),
            request.capacity,
            request.active,
            existing.last_assigned_at if existing else None,
        )
        await repository.put_agent(agent)
        return await with_load(agent)

    @router.delete("/agents/{agent_id}", tags=["agents"], summary="Deactivate (supervisor).")
    async def delete_agent(
        agent_id: AgentId, principal: Annotated[Principal, Depends(supervisor)]
    ) -> AgentView:
        agent = await repository.agent(agent_id)
        if agent is None:
            raise HTTPException(404, f"no agent {agent_id!r}")
        agent.active = False
        await repository.put_agent(agent)
        return await with_load(agent)

    # -- reports ------------------------------------------------------------------------------
    def period(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
        end = until or clock()
        try:
            start = since or end - timedelta(days=30)
        except OverflowError as exc:  # `until` in the first days of year 1
            raise HTTPException(422, "`until` is too early for a default range") from exc
        if start >= end:
            raise HTTPException(422, "`since` must be before `until`")
        if end - start > timedelta(days=report_max_days):
            days = math.ceil((end - start) / timedelta(days=1))
            raise HTTPException(
                422,
                f"the range from {start.isoformat()} to {end.isoformat()} is {days} days; a "
                f"report covers at most {report_max_days} days: ask for several shorter ranges",
            )
        return start, end

    @router.get(
        "/reports/sla",
        tags=["reports"],
        summary="Breach rate and mean times.",
        responses={422: {"description": "`since` not before `until`, or a range over the cap."}},
    )
    async def sla_report(
        principal: Annotated[Principal, Depends(reporter)],
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
    ) -> dict[str, Any]:
        start, end = period(since, until)
        report = queries.sla_report(await repository.sla_groups(start, end))
        return {"since": start, "until": end, "times_are": "business seconds", **report}

    @router.get(
        "/reports/root-causes",
        tags=["reports"],
        summary="Complaints by category and root cause.",
        responses={422: {"description": "`since` not before `until`, or a range over the cap."}},
    )
    async def root_causes(
        principal: Annotated[Principal, Depends(reporter)],
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
    ) -> dict[str, Any]:
        start, end = period(since, until)
        rows, tickets = await repository.root_cause_groups(start, end)
        return {"since": start, "until": end, **queries.root_cause_report(rows, tickets)}

    return router
