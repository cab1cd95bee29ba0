"""The relations API (port 8085): follow-up tasks, agreement customers, the follow-up report.

Tokens name people (ADR 0010): `owner=me` is the signed-in user. Agents (and account owners,
who sign in as agents) work their own tasks and the queue's; supervisors everyone's.
"""

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response

from crm_relations import commands
from crm_relations.domain.agreement import (
    AgreementError,
    AgreementStatus,
    NoAgreementError,
)
from crm_relations.domain.rules import RelationsRules
from crm_relations.domain.task import NoTaskError, TaskError, TaskStatus
from crm_relations.entrypoints.views import (
    AgreementRequest,
    AgreementView,
    AmendRequest,
    CompleteRequest,
    ReassignRequest,
    RenewRequest,
    TaskDetail,
    TaskRequest,
    TaskView,
    TerminateRequest,
    agreement_view,
    task_view,
)
from crm_relations.ports import (
    AgreementFilter,
    RelationsQueries,
    RelationsRepository,
    TaskFilter,
)
from crm_runtime.audit import PiiAudit
from crm_runtime.auth import Authenticator, Principal
from crm_runtime.http import IdempotencyKey
from crm_runtime.paging import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Page,
    after_id,
    decode_cursor,
    encode_cursor,
    id_cursor,
)
from crm_runtime.views import view

TaskId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Owner = Annotated[str | None, Query(max_length=64, description="`me`, a user id or `queue`.")]
Filter = Annotated[str | None, Query(min_length=1, max_length=128)]


class Repository(RelationsRepository, RelationsQueries, Protocol):
    """What the routes need: the commands' repository and the read side."""


def _actor(principal: Principal) -> commands.Actor:
    return commands.Actor(principal.user, supervisor="supervisor" in principal.roles)


def _task_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    position = decode_cursor(cursor)
    if position is None:
        return None
    try:
        return datetime.fromisoformat(str(position["due"])), str(position["id"])
    except (KeyError, ValueError) as exc:
        raise HTTPException(400, "the cursor is not valid; start again without one") from exc


def tasks_router(
    repository: Repository,
    auth: Authenticator,
    audit: PiiAudit,
    rules: RelationsRules,
    clock: Callable[[], datetime],
) -> APIRouter:
    router = APIRouter(tags=["tasks"])
    worker = auth.require("agent", "supervisor")
    reporter = auth.require("supervisor", "ops")

    async def act(call: Any) -> TaskView:
        try:
            done = await call
        except NoTaskError as exc:
            raise HTTPException(404, f"no task {exc.args[0]!r}") from exc
        except commands.NotYoursError as exc:
            raise HTTPException(403, str(exc)) from exc
        except TaskError as exc:
            raise HTTPException(409, str(exc)) from exc
        return task_view(done.task)

    @router.get("/tasks", summary="Tasks by due time: yours (owner=me), the queue's, anyone's.")
    async def list_tasks(
        principal: Annotated[Principal, Depends(worker)],
        owner: Owner = "me",
        status: TaskStatus | None = None,
        due_before: datetime | None = None,
        customer: Filter = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[TaskView]:
        who = principal.user if owner in ("me", None) else owner
        if who not in (principal.user, "queue") and "supervisor" not in principal.roles:
            raise HTTPException(403, "agents list their own tasks (owner=me) and the queue's")
        if due_before is not None and due_before.tzinfo is None:
            raise HTTPException(422, "due_before needs a time zone, e.g. 2027-01-31T18:00:00+08:00")
        filters = TaskFilter(who if owner != "*" else None, status, due_before, customer)
        tasks = await repository.task_page(filters, _task_cursor(cursor), limit)
        last = tasks[-1] if len(tasks) == limit else None
        next_cursor = (
            encode_cursor({"due": last.due_at.isoformat(), "id": last.task_id}) if last else None
        )
        return Page[TaskView](items=[task_view(t) for t in tasks], next_cursor=next_cursor)

    @router.get("/tasks/{task_id}", summary="One task with its summary (a personal-data read).")
    async def get_task(
        task_id: TaskId, principal: Annotated[Principal, Depends(worker)]
    ) -> TaskDetail:
        task = (await repository.tasks([task_id])).get(task_id)
        if task is None:
            raise HTTPException(404, f"no task {task_id!r}")
        if not _actor(principal).may_work(task):
            raise HTTPException(403, f"task {task_id} is another person's")
        if task.summary:
            await audit.record(principal, "GET /tasks/{task_id}", [task.customer_id])
        return view(TaskDetail, task)

    @router.post(
        "/tasks",
        status_code=201,
        summary="Make a task (for yourself or the queue; supervisors: for anyone).",
        responses={200: {"description": "A retry with the same Idempotency-Key."}},
    )
    async def create_task(
        request: TaskRequest,
        key: IdempotencyKey,
        response: Response,
        principal: Annotated[Principal, Depends(worker)],
    ) -> TaskView:
        if (request.due_on is None) == (request.due_in_business_days is None):
            raise HTTPException(422, "give one of due_on and due_in_business_days")
        if request.due_on is not None and request.due_on < clock().date() - timedelta(days=1):
            raise HTTPException(422, "due_on is in the past")
        owner = None if request.queue else (request.owner or principal.user)
        command = commands.CreateTask(
            request.customer_id,
            request.kind,
            owner,
            request.due_on,
            request.due_in_business_days,
            request.summary,
            key,
        )
        try:
            done = await commands.create_task(command, _actor(principal), repository, clock, rules)
        except commands.NotYoursError as exc:
            raise HTTPException(403, str(exc)) from exc
        except commands.IdempotencyKeyReusedError as exc:
            raise HTTPException(409, str(exc)) from exc
        response.status_code = 200 if done.replayed else 201
        return task_view(done.task)

    @router.post(
        "/tasks/{task_id}/complete",
        summary="Done: outcome, summary, and optionally the next follow-up's date (publishes "
        "task.completed with you as the person who did it).",
    )
    async def complete(
        task_id: TaskId,
        request: CompleteRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> TaskView:
        command = commands.CompleteTask(
            task_id, request.outcome, request.summary, request.next_follow_up_on
        )
        return await act(
            commands.complete_task(command, _actor(principal), repository, clock, rules)
        )

    @router.post("/tasks/{task_id}/reassign", summary="To another person or the queue (null).")
    async def reassign(
        task_id: TaskId,
        request: ReassignRequest,
        principal: Annotated[Principal, Depends(worker)],
    ) -> TaskView:
        actor = _actor(principal)
        return await act(commands.reassign_task(task_id, request.owner, actor, repository, clock))

    @router.post("/tasks/{task_id}/cancel", summary="Cancel an open task.")
    async def cancel(task_id: TaskId, principal: Annotated[Principal, Depends(worker)]) -> TaskView:
        return await act(commands.cancel_task(task_id, _actor(principal), repository, clock))

    @router.get(
        "/reports/follow-ups",
        summary="Per owner: tasks due, done on time, late, overdue; customers contacted within "
        "their plan's interval.",
        dependencies=[Depends(reporter)],
    )
    async def follow_ups(since: date | None = None, until: date | None = None) -> dict[str, Any]:
        now = clock()
        today = rules.calendar.local_date(now)
        until = until or today
        since = since or until - timedelta(days=29)
        if not date(2000, 1, 1) <= since <= until <= date(2199, 12, 31):
            raise HTTPException(422, "since must be on or before until, both in 2000-2199")
        if (until - since).days > 366:
            raise HTTPException(422, "since and until may be at most 366 days apart")
        return await repository.follow_up_report(now, since, until)

    return router


def agreements_router(
    repository: Repository,
    auth: Authenticator,
    audit: PiiAudit,
    rules: RelationsRules,
    clock: Callable[[], datetime],
) -> APIRouter:
    router = APIRouter(tags=["agreements"])
    reader = auth.require("agent", "supervisor", "ops", "integration")
    writer = auth.require("supervisor")
    zone = rules.calendar.zone

    async def change(call: Any) -> AgreementView:
        try:
            agreement = await call
        except NoAgreementError as exc:
            raise HTTPException(404, f"no agreement {exc.args[0]!r}") from exc
        except AgreementError as exc:
            raise HTTPException(409, str(exc)) from exc
        return agreement_view(agreement, clock(), zone)

    @router.post(
        "/agreements",
        status_code=201,
        summary="An agreement customer (协议客户): dates, owner and terms. Supervisor.",
        responses={409: {"description": "The customer has an agreement with this number."}},
    )
    async def create(
        request: AgreementRequest,
        key: IdempotencyKey,
        principal: Annotated[Principal, Depends(writer)],
    ) -> AgreementView:
        if request.ends_on < request.starts_on:
            raise HTTPException(422, "ends_on must be on or after starts_on")
        command = commands.CreateAgreement(
            request.customer_id,
            request.number,
            request.owner,
            request.starts_on,
            request.ends_on,
            request.terms.to_terms(),
            key,
        )
        try:
            return await change(
                commands.create_agreement(command, principal.user, repository, clock)
            )
        except commands.AgreementExistsError as exc:
            raise HTTPException(409, str(exc)) from exc

    @router.get("/agreements", summary="Agreements by customer, status or owner.")
    async def list_agreements(
        principal: Annotated[Principal, Depends(reader)],
        customer: Filter = None,
        status: AgreementStatus | None = None,
        owner: Owner = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[AgreementView]:
        who = principal.user if owner == "me" else owner
        filters = AgreementFilter(customer, status, who)
        found = await repository.agreement_page(filters, after_id(cursor), limit)
        if any(a.terms.price_note for a in found):
            await audit.record(principal, "GET /agreements", sorted({a.customer_id for a in found}))
        now = clock()
        items = [agreement_view(a, now, zone) for a in found]
        last = found[-1].agreement_id if found else None
        return Page[AgreementView](items=items, next_cursor=id_cursor(last, len(found), limit))

    @router.get("/agreements/{agreement_id}", summary="One agreement with its fulfilment.")
    async def get_agreement(
        agreement_id: TaskId, principal: Annotated[Principal, Depends(reader)]
    ) -> AgreementView:
        agreement = (await repository.agreements([agreement_id])).get(agreement_id)
        if agreement is None:
            raise HTTPException(404, f"no agreement {agreement_id!r}")
        if agreement.terms.price_note:
            await audit.record(principal, "GET /agreements/{id}", [agreement.customer_id])
        return agreement_view(agreement, clock(), zone)

    @router.put("/agreements/{agreement_id}", summary="Amend: owner, end date, terms. Supervisor.")
    async def amend(
        agreement_id: TaskId,
        request: AmendRequest,
        principal: Annotated[Principal, Depends(writer)],
    ) -> AgreementView:
        command = commands.AmendAgreement(
            agreement_id, request.owner, request.ends_on, request.terms.to_terms()
        )
        return await change(commands.amend_agreement(command, principal.user, repository, clock))

    @router.post("/agreements/{agreement_id}/terminate", summary="End early. Supervisor.")
    async def terminate(
        agreement_id: TaskId,
        request: TerminateRequest,
        principal: Annotated[Principal, Depends(writer)],
    ) -> AgreementView:
        call = commands.terminate_agreement(
            agreement_id, request.on, principal.user, repository, clock
        )
        return await change(call)

    @router.post("/agreements/{agreement_id}/renew", summary="Extend to a new end. Supervisor.")
    async def renew(
        agreement_id: TaskId,
        request: RenewRequest,
        principal: Annotated[Principal, Depends(writer)],
    ) -> AgreementView:
        call = commands.renew_agreement(
            agreement_id, request.ends_on, principal.user, repository, clock
        )
        return await change(call)

    return router
