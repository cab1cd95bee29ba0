"""The console's routes. Each translates: the request into calls to the services (with the
signed-in person's token), their answers into a template. Parts of a page are fetched at once
and each fails alone: a service that is down shows as such where it feeds the page.
"""

import asyncio
import hmac
import uuid
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console import i18n
from crm_console.charts import bars, fulfilment, trend
from crm_console.upstream import Answer, Failure, Result
from crm_console.web import (
    ROLE_PAGES,
    SESSION_COOKIE,
    SIGNIN_CSRF_COOKIE,
    Console,
    CsrfRefused,
    Missing,
    Page,
    Refused,
    local_path,
    read_form,
)

Id = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s/]+$")]
CUSTOMER_FILTERS = (
    "q",
    "grade",
    "stage",
    "owner",
    "at_risk",
    "tag",
    "city",
    "min_net_spent",
    "max_net_spent",
    "last_order_after",
    "last_order_before",
    "sort",
)
"""`GET /customers`' parameters, passed to the archive as they are (it checks them)."""
TICKET_FILTERS = ("status", "priority", "queue", "assignee", "customer_id", "breached")
OPEN_STATUSES = ("new", "assigned", "in_progress", "waiting_customer")
STATUSES = (*OPEN_STATUSES, "resolved", "closed")
GRADES = ("vip", "ordinary", "potential")
STAGES = ("potential", "new", "active", "loyal", "at_risk", "churned", "one_time")
CHANNELS = ("call", "email", "visit", "meeting", "wechat", "social")
PRIORITIES = ("P1", "P2", "P3", "P4")
SORTS = ("net_spent", "-net_spent", "last_order_at", "-last_order_at", "rfm", "-rfm")
OUTCOMES = ("reached", "not_reached", "resolved", "declined", "other")
TASK_STATUSES = ("open", "overdue", "done", "cancelled")
AGREEMENT_STATUSES = ("active", "ended", "terminated")
SIGNIN_ROLES = frozenset({"agent", "supervisor", "ops"})
QUEUE_LIMIT = 25


def data(result: Result) -> Any:
    return result.data if isinstance(result, Answer) else None


def router(console: Console) -> APIRouter:
    routes = APIRouter()
    routes.include_router(session_routes(console))
    routes.include_router(customer_routes(console))
    routes.include_router(ticket_routes(console))
    routes.include_router(relation_routes(console))
    routes.include_router(report_routes(console))
    return routes


# -- sign-in, sign-out, language --------------------------------------------------------------
def session_routes(console: Console) -> APIRouter:
    routes = APIRouter()

    @routes.get("/", include_in_schema=False)
    async def home(request: Request) -> RedirectResponse:
        return RedirectResponse("/customers", status_code=303)

    def signin_page(page: Page, status: int = 200, error: str | None = None) -> Response:
        token = console.signin_csrf(page.request)
        response = console.render(
            page,
            "signin.html",
            status,
            signin_csrf=token,
            error=error,
            next=local_path(page.request.query_params.get("next")),
            notice=page.request.query_params.get("notice"),
        )
        console.set_cookie(response, SIGNIN_CSRF_COOKIE, token, 3600)
        return response

    @routes.get("/signin", summary="The sign-in form.")
    async def signin_form(request: Request) -> Response:
        return signin_page(console.anonymous(request))

    @routes.post("/signin", summary="Sign in with a personal API token.")
    async def signin(request: Request) -> Response:
        page = console.anonymous(request)
        fields = await read_form(request)
        expected = request.cookies.get(SIGNIN_CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(fields.get("csrf", ""), expected):
            raise CsrfRefused
        token = fields.get("token", "").strip()
        if not token:
            return signin_page(page, 422, page.t("error.missing", fields=page.t("signin.token")))
        me = await who_is(console, token)
        if isinstance(me, Failure):
            if me.status in (401, 403):
                return signin_page(page, 401, page.t("signin.bad_token"))
            return signin_page(page, 503, console.failure_text(page, me))
        roles = frozenset(me["roles"]) & SIGNIN_ROLES
        if not roles:
            return signin_page(page, 403, page.t("signin.no_role"))
        session_id, _ = console.sessions.start(str(me["user"]), roles, token)
        response = console.back(local_path(fields.get("next")))
        console.set_cookie(response, SESSION_COOKIE, session_id, console.settings.session_idle_s)
        response.delete_cookie(SIGNIN_CSRF_COOKIE, path="/")
        return response

    @routes.post("/signout", summary="End the session.")
    async def signout(request: Request) -> Response:
        page = console.page(request)
        await console.form(page)
        console.sessions.end(request.cookies.get(SESSION_COOKIE))
        response = console.back("/signin?notice=signed_out")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @routes.get("/lang/{locale}", summary="Switch the language (a cookie) and go back.")
    async def language(
        locale: str, next: Annotated[str | None, Query(max_length=2000)] = None
    ) -> Response:
        if locale not in i18n.LOCALES:
            raise Missing
        response = console.back(local_path(next))
        response.set_cookie(
            i18n.LANG_COOKIE,
            locale,
            max_age=365 * 24 * 3600,
            samesite="strict",
            secure=console.settings.secure_cookies,
        )
        return response

    return routes


async def who_is(console: Console, token: str) -> dict[str, Any] | Failure:
    """`GET /me` of the first service that answers: who the token names and its roles."""
    last: Failure | None = None
    for service in console.services.urls:
        answer = await console.services.get(service, "/me", token)
        if isinstance(answer, Answer) and isinstance(answer.data, dict):
            return answer.data
        if isinstance(answer, Failure) and not answer.unavailable:
            return answer  # a refusal is the token's, whichever service says it
        last = answer if isinstance(answer, Failure) else None
    return last or Failure("archive", None)


# -- customers --------------------------------------------------------------------------------
def customer_routes(console: Console) -> APIRouter:
    routes = APIRouter()
    services = console.services

    @routes.get("/customers", summary="Find customers.")
    async def customers(request: Request) -> HTMLResponse:
        page = console.page(request, *ROLE_PAGES["customers"])
        token = page.session.token if page.session else ""
        query = request.query_params
        params: list[tuple[str, str | None]] = [
            (name, value) for name, value in query.multi_items() if name in CUSTOMER_FILTERS
        ]
        params += [("cursor", query.get("cursor")), ("limit", "25")]
        found = await services.get("archive", "/customers", token, params)
        return console.render(
            page,
            "customers.html",
            found=data(found),
            error=console.failure_text(page, found) if isinstance(found, Failure) else None,
            query=dict(query),
            grades=GRADES,
            stages=STAGES,
            sorts=SORTS,
            next_query=_next_query(query, data(found)),
        )

    @routes.get("/customers/{customer_id}", summary="A customer, all around (360°).")
    async def customer(
        request: Request, customer_id: Id, cursor: str | None = None
    ) -> HTMLResponse:
        page = console.page(request, *ROLE_PAGES["customers"])
        session = page.session
        assert session is not None
        token = session.token
        staff = session.has("agent", "supervisor")
        base = f"/customers/{customer_id}"
        calls = {
            "customer": services.get("archive", base, token),
            "timeline": services.get(
                "archive", f"{base}/timeline", token, {"limit": 20, "cursor": cursor}
            ),
            "account": services.get("loyalty", f"/accounts/{customer_id}", token),
            "ledger": services.get(
                "loyalty", f"/accounts/{customer_id}/ledger", token, {"limit": 10}
            ),
            "tickets": services.get("tickets", "/tickets", token, {"customer_id": customer_id}),
            "agreements": services.get(
                "relations", "/agreements", token, {"customer": customer_id}
            ),
        }
        if staff:
            calls["notes"] = services.get("archive", f"{base}/notes", token, {"limit": 20})
            # agents list their own tasks (the relations service's rule), supervisors anyone's
            owner = "*" if session.has("supervisor") else "me"
            calls["tasks"] = services.get(
                "relations", "/tasks", token, {"owner": owner, "customer": customer_id}
            )
        results = dict(zip(calls, await asyncio.gather(*calls.values()), strict=True))
        found = results["customer"]
        if isinstance(found, Failure) and found.status == 404:
            raise Missing
        if isinstance(found, Failure) and found.status == 403:
            raise Refused

        def part(name: str, absent_is_empty: bool = False) -> dict[str, Any]:
            result = results.get(name)
            if result is None:
                return {"data": None, "error": None}
            if isinstance(result, Failure):
                if absent_is_empty and result.status == 404:
                    return {"data": None, "error": None}
                return {"data": None, "error": console.failure_text(page, result)}
            return {"data": result.data, "error": None}

        return console.render(
            page,
            "customer.html",
            customer_id=customer_id,
            customer=part("customer"),
            timeline=part("timeline"),
            account=part("account", absent_is_empty=True),
            ledger=part("ledger", absent_is_empty=True),
            tickets=part("tickets"),
            notes=part("notes"),
            tasks=part("tasks"),
            agreements=part("agreements"),
            open_task=is_open_task,
            staff=staff,
            channels=CHANNELS,
            contact_key=str(uuid.uuid4()),
            version=found.etag if isinstance(found, Answer) else None,
        )

    @routes.post("/customers/{customer_id}/contacts", summary="Log a contact.")
    async def log_contact(request: Request, customer_id: Id) -> Response:
        page = console.page(request, "agent", "supervisor")
        fields = await console.form(page)
        key = fields.get("key", "").strip()
        if not key:  # the form carries it: without it a retry could log the contact twice
            raise CsrfRefused
        body = {
            name: fields[name].strip()
            for name in ("channel", "direction", "purpose", "outcome", "summary", "next_contact_on")
            if fields.get(name, "").strip()
        }
        if "channel" not in body:
            return missing(console, page, customer_id, "contact.channel", "#contact")
        result = await services.call(
            "archive",
            "POST",
            f"/customers/{customer_id}/contacts",
            _token(page),
            json=body,
            headers={"Idempotency-Key": key},
        )
        return after(console, page, result, "contact.logged", f"/customers/{customer_id}#timeline")

    @routes.post("/customers/{customer_id}/notes", summary="Add a note.")
    async def add_note(request: Request, customer_id: Id) -> Response:
        page = console.page(request, "agent", "supervisor")
        fields = await console.form(page)
        text = fields.get("text", "").strip()
        if not text:
            return missing(console, page, customer_id, "note.text", "#notes")
        result = await services.call(
            "archive", "POST", f"/customers/{customer_id}/notes", _token(page), json={"text": text}
        )
        return after(console, page, result, "note.added", f"/customers/{customer_id}#notes")

    @routes.post("/customers/{customer_id}/owner", summary="Set the account owner (supervisor).")
    async def set_owner(request: Request, customer_id: Id) -> Response:
        page = console.page(request, "supervisor")
        fields = await console.form(page)
        owner = fields.get("account_owner", "").strip()
        if not owner:
            return missing(console, page, customer_id, "owner.user", "#owner")
        result = await services.call(
            "archive",
            "PATCH",
            f"/customers/{customer_id}",
            _token(page),
            json={"account_owner": owner},
            headers=if_match(fields),
        )
        return after(console, page, result, "owner.set", f"/customers/{customer_id}")

    @routes.post("/customers/{customer_id}/profile", summary="Edit the profile (If-Match).")
    async def edit_profile(request: Request, customer_id: Id) -> Response:
        page = console.page(request, "agent", "supervisor")
        fields = await console.form(page)
        if not fields.get("version"):  # edits are made on the version read, never blind
            raise CsrfRefused
        body = {name: fields.get(name, "").strip() or None for name in PROFILE_FIELDS}
        result = await services.call(
            "archive",
            "PATCH",
            f"/customers/{customer_id}",
            _token(page),
            json=body,
            headers=if_match(fields),
        )
        return after(console, page, result, "profile.saved", f"/customers/{customer_id}")

    return routes


PROFILE_FIELDS = ("name", "phone", "email", "city")
"""The profile fields the edit form offers (the archive validates them)."""


def if_match(fields: dict[str, str]) -> dict[str, str]:
    """`If-Match` with the version the form was rendered from (the archive's `ETag`), if any."""
    version = fields.get("version", "").strip()
    return {"If-Match": version} if version else {}


def _token(page: Page) -> str:
    assert page.session is not None
    return page.session.token


def _next_query(query: Any, found: Any) -> str | None:
    """The query string of the next page: the same filters, the answer's cursor."""
    if not isinstance(found, dict) or not found.get("next_cursor"):
        return None
    kept = [(k, v) for k, v in query.multi_items() if k != "cursor"]
    return urlencode([*kept, ("cursor", found["next_cursor"])])


def missing(console: Console, page: Page, customer_id: str, field: str, anchor: str) -> Response:
    assert page.session is not None
    page.session.flash("error", page.t("error.missing", fields=page.t(field)))
    return console.back(f"/customers/{customer_id}{anchor}")


def after(console: Console, page: Page, result: Result, done: str, target: str) -> Response:
    """Back to the page, with what happened said on it."""
    assert page.session is not None
    if isinstance(result, Failure):
        page.session.flash("error", console.failure_text(page, result))
    else:
        page.session.flash("ok", page.t(done))
    return console.back(target)


# -- tickets ----------------------------------------------------------------------------------
def ticket_routes(console: Console) -> APIRouter:
    routes = APIRouter()
    services = console.services

    @routes.get("/tickets", summary="The ticket queue.")
    async def queue(request: Request) -> HTMLResponse:
        page = console.page(request, *ROLE_PAGES["tickets"])
        token = _token(page)
        query = request.query_params
        params: list[tuple[str, str | None]] = [
            (k, v) for k, v in query.multi_items() if k in TICKET_FILTERS
        ]
        params += [("cursor", query.get("cursor")), ("limit", str(QUEUE_LIMIT))]
        found = await services.get("tickets", "/tickets", token, params)
        items = data(found)["items"] if isinstance(found, Answer) else []  # with their SLA clocks
        return console.render(
            page,
            "tickets.html",
            items=items,
            sla=lambda t: sla_lines(page, t),
            error=console.failure_text(page, found) if isinstance(found, Failure) else None,
            query=dict(query),
            statuses=STATUSES,
            priorities=PRIORITIES,
            next_query=_next_query(query, data(found)),
        )

    @routes.get("/tickets/{ticket_id}", summary="A ticket, its SLA and history.")
    async def ticket(request: Request, ticket_id: Id) -> HTMLResponse:
        page = console.page(request, *ROLE_PAGES["tickets"])
        found = await services.get("tickets", f"/tickets/{ticket_id}", _token(page))
        if isinstance(found, Failure) and found.status == 404:
            raise Missing
        return console.render(
            page,
            "ticket.html",
            ticket_id=ticket_id,
            ticket=data(found),
            sla=sla_lines(page, data(found)) if isinstance(found, Answer) else [],
            error=console.failure_text(page, found) if isinstance(found, Failure) else None,
            statuses=STATUSES,
            worker=page.session is not None and page.session.has("agent", "supervisor"),
        )

    @routes.post("/tickets/{ticket_id}/{action}", summary="Act on a ticket.")
    async def act(request: Request, ticket_id: Id, action: str) -> Response:
        page = console.page(request, "agent", "supervisor")
        fields = await console.form(page)
        body = ticket_action(action, fields)
        if body is None:
            raise Missing
        if isinstance(body, str):  # a field the action needs is empty
            assert page.session is not None
            page.session.flash("error", page.t("error.missing", fields=page.t(body)))
            return console.back(f"/tickets/{ticket_id}")
        result = await services.call(
            "tickets", "POST", f"/tickets/{ticket_id}/{action}", _token(page), json=body
        )
        return after(console, page, result, "ticket.done", f"/tickets/{ticket_id}")

    @routes.get("/work", summary="My open tickets, my tasks due today and overdue.")
    async def work(request: Request) -> HTMLResponse:
        page = console.page(request, *ROLE_PAGES["work"])
        token = _token(page)
        end_of_today = datetime.combine(
            datetime.now(console.zone).date() + timedelta(days=1), time(), console.zone
        )
        task_calls = [
            services.get("relations", "/tasks", token, {"owner": "me", "status": "overdue"}),
            services.get(
                "relations",
                "/tasks",
                token,
                {"owner": "me", "status": "open", "due_before": end_of_today.isoformat()},
            ),
        ]
        ticket_calls = [
            services.get("tickets", "/tickets", token, {"assignee": "me", "status": status})
            for status in OPEN_STATUSES
        ]
        answers = await asyncio.gather(*ticket_calls, *task_calls)
        ticket_answers, task_answers = answers[: len(ticket_calls)], answers[len(ticket_calls) :]
        failures = [a for a in ticket_answers if isinstance(a, Failure)]
        items = [t for a in ticket_answers if isinstance(a, Answer) for t in a.data["items"]]
        items.sort(key=lambda t: (t["priority"], t["opened_at"]))
        tasks, task_error = merged_tasks(console, page, task_answers)
        return console.render(
            page,
            "work.html",
            items=items,
            sla=lambda t: sla_lines(page, t),
            error=console.failure_text(page, failures[0]) if failures else None,
            tasks=tasks,
            task_error=task_error,
            outcomes=OUTCOMES,
            open_task=is_open_task,
        )

    return routes


def ticket_action(action: str, fields: dict[str, str]) -> dict[str, Any] | str | None:
    """The body the tickets API takes for `action`; the label key of a missing field; None for
    an action it does not have."""
    value = {name: text.strip() for name, text in fields.items()}
    match action:
        case "assign":
            return {"assignee": value["assignee"]} if value.get("assignee") else "ticket.assign_to"
        case "comment":
            if not value.get("text"):
                return "ticket.comment_text"
            return {"text": value["text"], "public": value.get("public") == "on"}
        case "status":
            return {"status": value["status"]} if value.get("status") else "ticket.new_status"
        case "resolve":
            causes = [c.strip() for c in value.get("root_causes", "").replace("，", ",").split(",")]
            causes = [c for c in causes if c]
            if not causes:
                return "ticket.root_causes_field"
            return {"root_causes": causes, "summary": value.get("summary") or None}
        case "reopen":
            return {"reason": value.get("reason") or None}
    return None


def sla_lines(page: Page, ticket: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Each SLA clock as (state, words): `due` (counting down), `overdue`, `breached`, `met`,
    `paused`; empty when the ticket is not known."""
    if not ticket or not isinstance(ticket.get("sla"), dict):
        return []
    now = datetime.now(UTC)
    lines = []
    for target, clock in ticket["sla"].items():
        name = page.t(f"sla.{target}")
        done = ticket.get("first_response_at") if target == "first_response" else None
        done = done or ticket.get("resolved_at")
        if clock.get("breached"):
            lines.append(("breached", page.t("sla.breached", target=name)))
        elif clock.get("running") and clock.get("due_at"):
            left = (datetime.fromisoformat(clock["due_at"]) - now).total_seconds()
            words = i18n.duration(page.locale, left)
            key = "sla.due_in" if left >= 0 else "sla.overdue"
            lines.append(("due" if left >= 0 else "overdue", page.t(key, target=name, left=words)))
        elif done:
            lines.append(("met", page.t("sla.met", target=name)))
        else:
            lines.append(("paused", page.t("sla.paused", target=name)))
    return lines


# -- tasks and agreements (the relations service) ---------------------------------------------
def is_open_task(task: dict[str, Any]) -> bool:
    return task.get("status") in ("open", "overdue")


def merged_tasks(
    console: Console, page: Page, answers: list[Result]
) -> tuple[list[dict[str, Any]], str | None]:
    """The tasks of several lists, by due time, and what to say if one of them failed."""
    failures = [a for a in answers if isinstance(a, Failure)]
    tasks = {t["task_id"]: t for a in answers if isinstance(a, Answer) for t in a.data["items"]}
    ordered = sorted(tasks.values(), key=lambda t: (str(t["due_at"]), t["task_id"]))
    return ordered, console.failure_text(page, failures[0]) if failures else None


def at_risk(agreement: dict[str, Any]) -> bool:
    """An active agreement whose current period is projected below its minimum."""
    current = agreement.get("current_period")
    if agreement.get("status") != "active" or not isinstance(current, dict):
        return False
    return Decimal(str(current["projected"])) < Decimal(str(current["minimum"]))


def fulfilment_chart(page: Page, agreement: dict[str, Any]) -> Any:
    """Each period of the agreement as a bar: the share of its minimum fulfilled."""
    current = agreement.get("current_period") or {}
    periods = list(agreement.get("periods", []))
    starts = {p.get("period_start") for p in periods}
    if current and current.get("period_start") not in starts:  # no order counted in it yet
        periods.append(current)
    rows = []
    for period in periods:
        fulfilled, minimum = float(period["fulfilled"]), float(period["minimum"])
        if period.get("closed"):
            state = "met" if period.get("met") else "short"
        elif period.get("period_start") == current.get("period_start") and at_risk(agreement):
            state = "at_risk"
        else:
            state = "open"
        rows.append((str(period["period_start"])[:7], fulfilled, minimum, state))
    title = page.t("agreements.fulfilment", number=agreement.get("number", ""))
    return fulfilment(rows, title=title)


def relation_routes(console: Console) -> APIRouter:
    routes = APIRouter()
    services = console.services

    @routes.get("/tasks", summary="Tasks: mine by default (relations).")
    async def tasks(request: Request) -> HTMLResponse:
        page = console.page(request, *ROLE_PAGES["tasks"])
        token = _token(page)
        query = request.query_params
        owner = query.get("owner", "").strip() or "me"
        status = query.get("status", "")
        statuses = [status] if status in TASK_STATUSES else ["open", "overdue"]
        answers = await asyncio.gather(
            *(
                services.get("relations", "/tasks", token, {"owner": owner, "status": s})
                for s in statuses
            )
        )
        found, error = merged_tasks(console, page, list(answers))
        return console.render(
            page,
            "tasks.html",
            tasks=found,
            error=error,
            query={"owner": owner, "status": status},
            statuses=TASK_STATUSES,
            outcomes=OUTCOMES,
            open_task=is_open_task,
        )

    @routes.post("/tasks/{task_id}/complete", summary="Complete a task with its outcome.")
    async def complete(request: Request, task_id: Id) -> Response:
        page = console.page(request, *ROLE_PAGES["tasks"])
        fields = await console.form(page)
        target = local_path(fields.get("next"), "/work")
        outcome = fields.get("outcome", "").strip()
        if outcome not in OUTCOMES:
            assert page.session is not None
            page.session.flash("error", page.t("error.missing", fields=page.t("tasks.outcome")))
            return console.back(target)
        body: dict[str, Any] = {"outcome": outcome}
        for name in ("summary", "next_follow_up_on"):
            if fields.get(name, "").strip():
                body[name] = fields[name].strip()
        result = await services.call(
            "relations", "POST", f"/tasks/{task_id}/complete", _token(page), json=body
        )
        return after(console, page, result, "tasks.done", target)

    @routes.get("/agreements", summary="Agreements with each period's fulfilment, at risk first.")
    async def agreements(request: Request) -> HTMLResponse:
        page = console.page(request, *ROLE_PAGES["agreements"])
        query = request.query_params
        status = query.get("status", "active")
        params = {
            "status": status if status in AGREEMENT_STATUSES else None,
            "owner": query.get("owner", "").strip() or None,
            "customer": query.get("customer", "").strip() or None,
            "limit": 100,
        }
        found = await services.get("relations", "/agreements", _token(page), params)
        items = data(found)["items"] if isinstance(found, Answer) else []
        items.sort(key=lambda a: (not at_risk(a), str(a.get("number"))))
        return console.render(
            page,
            "agreements.html",
            items=items,
            at_risk=at_risk,
            chart=lambda a: fulfilment_chart(page, a),
            error=console.failure_text(page, found) if isinstance(found, Failure) else None,
            query={"status": status, **{k: query.get(k, "") for k in ("owner", "customer")}},
            statuses=AGREEMENT_STATUSES,
        )

    return routes


# -- supervisor and ops -----------------------------------------------------------------------
CHURN_SAMPLE = 500
DEAD_LETTERS = 10
"""The newest dead letters listed per service on the ops page."""


def follow_up_rows(page: Page, report: dict[str, Any]) -> list[tuple[str, float]]:
    """Per owner with tasks due in the window: the share done (on time or late), in percent."""
    rows = []
    for row in report.get("owners", []):
        due = int(row.get("due") or 0)
        if due:
            done = int(row.get("done_on_time") or 0) + int(row.get("done_late") or 0)
            name = (
                row["owner"] if row["owner"] != "queue" else page.t("supervisor.follow_ups_queue")
            )
            rows.append((f"{name} ({done}/{due})", 100 * done / due))
    return rows


def satisfaction_charts(page: Page, report: dict[str, Any]) -> dict[str, Any]:
    """CSAT (1-5) and NPS (-100..100) per period, as two lines over the same periods, and the
    latest period's figures in words."""
    periods = report.get("periods", [])
    interval = report.get("interval", "week")
    labels = [str(p.get("start", ""))[: 7 if interval == "month" else 10] for p in periods]
    labels = [label if interval == "month" else label[5:] for label in labels]
    csat = [(label, p["csat"]["average"]) for label, p in zip(labels, periods, strict=True)]
    nps = [(label, p["nps"]["score"]) for label, p in zip(labels, periods, strict=True)]
    answered = [p for p in periods if p.get("responses")]
    latest = answered[-1] if answered else None
    return {
        "csat": trend(csat, title=page.t("supervisor.csat"), low=1, high=5),
        "nps": trend(
            nps, title=page.t("supervisor.nps"), low=-100, high=100, fmt="{:.0f}", baseline=0
        ),
        "latest": latest,
        "interval": interval,
    }


def report_routes(console: Console) -> APIRouter:
    routes = APIRouter()
    services = console.services

    @routes.get("/supervisor", summary="Reports, as charts (supervisor).")
    async def supervisor(
        request: Request, interval: Annotated[str, Query(max_length=10)] = "week"
    ) -> HTMLResponse:
        page = console.page(request, *ROLE_PAGES["supervisor"])
        interval = interval if interval in ("week", "month") else "week"
        token = _token(page)
        sla, causes, liability, segments, churn, follow_ups, satisfaction = await asyncio.gather(
            services.get("tickets", "/reports/sla", token),
            services.get("tickets", "/reports/root-causes", token),
            services.get("loyalty", "/reports/liability", token),
            services.get("archive", "/segments/summary", token),
            services.get(
                "archive", "/customers", token, {"at_risk": "true", "limit": CHURN_SAMPLE}
            ),
            services.get("relations", "/reports/follow-ups", token),
            services.get("tickets", "/reports/satisfaction", token, {"interval": interval}),
        )
        charts: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, result in (
            ("sla", sla),
            ("causes", causes),
            ("liability", liability),
            ("segments", segments),
            ("churn", churn),
            ("follow_ups", follow_ups),
            ("satisfaction", satisfaction),
        ):
            if isinstance(result, Failure):
                errors[name] = console.failure_text(page, result)
        if isinstance(sla, Answer):
            rows = [
                (p, 100 * (figures.get("breach_rate") or 0))
                for p, figures in sla.data.get("by_priority", {}).items()
            ]
            charts["sla"] = bars(rows, title=page.t("supervisor.breach_rate"), fmt="{:.1f}%")
            charts["sla_all"] = sla.data.get("all", {})
        if isinstance(causes, Answer):
            rows = [
                (f"{row['category']} / {row['root_cause']}", row["tickets"])
                for row in causes.data.get("top", [])
            ]
            charts["causes"] = bars(rows, title=page.t("supervisor.root_causes"))
        if isinstance(liability, Answer):
            months = liability.data.get("by_expiry_month", {})
            charts["liability"] = bars(list(months.items()), title=page.t("supervisor.liability"))
            charts["liability_all"] = liability.data
        if isinstance(segments, Answer):
            grades = segments.data.get("grade", {})
            stages = segments.data.get("stage", {})
            rows = [(i18n.value_name(page.locale, "grade", g), n) for g, n in grades.items()]
            rows += [(i18n.value_name(page.locale, "stage", s), n) for s, n in stages.items()]
            charts["segments"] = bars(rows, title=page.t("supervisor.segments"))
        if isinstance(churn, Answer):
            owners = Counter(
                row.get("account_owner") or page.t("supervisor.no_owner")
                for row in churn.data.get("items", [])
            )
            charts["churn"] = bars(owners.most_common(), title=page.t("supervisor.churn_by_owner"))
            charts["churn_sample"] = CHURN_SAMPLE if churn.data.get("next_cursor") else None
        if isinstance(follow_ups, Answer):
            charts["follow_ups"] = bars(
                follow_up_rows(page, follow_ups.data),
                title=page.t("supervisor.follow_ups"),
                fmt="{:.0f}%",
            )
        if isinstance(satisfaction, Answer):
            charts["satisfaction"] = satisfaction_charts(page, satisfaction.data)
        return console.render(
            page, "supervisor.html", charts=charts, errors=errors, interval=interval
        )

    @routes.get("/ops", summary="Metrics, dead letters, the audit of personal-data reads (ops).")
    async def ops(request: Request) -> HTMLResponse:
        page = console.page(request, *ROLE_PAGES["ops"])
        token = _token(page)
        names = list(services.urls)
        found = await asyncio.gather(
            *(services.get(name, "/audit/pii-reads", token, {"limit": 20}) for name in names),
            *(
                services.get(name, "/dead-letters", token, {"limit": DEAD_LETTERS})
                for name in names
            ),
        )
        answers, letters = found[: len(names)], found[len(names) :]
        dead_letters = {
            name: (
                {"error": console.failure_text(page, letter)}
                if isinstance(letter, Failure)
                else letter.data
            )
            for name, letter in zip(names, letters, strict=True)
        }
        reads: list[dict[str, Any]] = []
        errors = []
        for answer in answers:
            if isinstance(answer, Answer):
                reads += answer.data.get("items", [])
            else:
                errors.append(console.failure_text(page, answer))
        reads.sort(key=lambda read: str(read.get("at")), reverse=True)
        return console.render(
            page,
            "ops.html",
            metrics={name: f"{url}/metrics" for name, url in services.urls.items()},
            reads=reads[:50],
            errors=errors,
            dead_letters=dead_letters,
        )

    return routes
