"""In-memory stand-ins for the services' HTTP APIs, for the console's unit tests: just the routes
the console calls, with the services' roles, answering what the real ones answer. A service in
`down` refuses the connection, as a stopped one does."""

from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

TOKENS = {
    "agent-token": {"user": "agent-07", "roles": ["agent"]},
    "sup-token": {"user": "sup-01", "roles": ["supervisor"]},
    "ops-token": {"user": "ops-01", "roles": ["ops"]},
    "integration-token": {"user": "shop", "roles": ["integration"]},
}
CUSTOMER = {
    "id": "c-1",
    "stub": False,
    "profile": {"name": "王小丫", "phone": "+86 13911112222", "email": None, "city": "杭州"},
    "tags": [],
    "account_owner": None,
    "grade": "vip",
    "stage": "active",
    "erased": False,
    "churn_risk": {"at_risk": True, "reasons": ["complaints"], "since": "2026-11-01T00:00:00Z"},
    "value": {
        "order_count": 3,
        "net_spent": "12345.60",
        "currency": "CNY",
        "average_order_value": "4115.20",
        "first_order_at": "2026-01-01T00:00:00Z",
        "last_order_at": "2026-11-01T00:00:00Z",
        "rfm": {"r": 4, "f": 3, "m": 5, "total": 12},
        "nps": None,
        "csat": None,
    },
}

TICKET_ROW = {
    "id": "T-1",
    "customer_id": "c-1",
    "status": "assigned",
    "priority": "P2",
    "category": "delivery",
    "queue": "general",
    "assignee": "agent-07",
    "opened_at": "2026-12-01T10:00:00Z",
    "breached": False,
    "flagged_for_review": False,
    "first_response_at": None,
    "resolved_at": None,
    "sla": {
        "first_response": {"running": True, "due_at": "2099-12-01T10:00:00Z", "breached": False},
        "resolution": {"running": True, "due_at": "2099-12-03T10:00:00Z", "breached": False},
    },
}


def task(task_id: str, status: str, due_at: str, owner: str = "agent-07") -> dict[str, Any]:
    return {
        "task_id": task_id,
        "customer_id": "c-1",
        "kind": "follow_up",
        "owner": owner,
        "due_at": due_at,
        "status": status,
        "reason": "plan",
        "created_at": "2026-11-01T00:00:00Z",
        "created_by": "relations",
        "agreement_id": None,
        "outcome": None,
        "completed_at": None,
        "completed_by": None,
        "on_time": None,
    }


def agreement(number: str, fulfilled: str, projected: str) -> dict[str, Any]:
    current = {
        "period_start": "2026-10-01",
        "period_end": "2026-12-31",
        "fulfilled": fulfilled,
        "projected": projected,
        "minimum": "100000",
        "share_left": 0.3,
        "closed": False,
        "met": None,
    }
    closed = {**current, "period_start": "2026-07-01", "period_end": "2026-09-30"}
    closed.update(fulfilled="120000", projected="120000", share_left=0.0, closed=True, met=True)
    return {
        "agreement_id": f"a-{number}",
        "customer_id": "c-1",
        "number": number,
        "owner": "agent-07",
        "starts_on": "2026-07-01",
        "ends_on": "2027-06-30",
        "status": "active",
        "terms": {
            "period": "quarter",
            "measure": "spend",
            "minimum": "100000",
            "currency": "CNY",
            "first_response_hours": 4,
            "renewal_notice_days": 30,
            "price_note": None,
        },
        "created_by": "sup-01",
        "current_period": current,
        "periods": [closed, current],
    }


class FakeSuite:
    def __init__(self) -> None:
        self.down: set[str] = set()
        self.broken: set[str] = set()
        """Services that answer 500 to everything."""
        self.version: int | None = None
        """The customer's version (`ETag`), when the archive versions edits; None: it does not."""
        self.patches: list[dict[str, Any]] = []
        self.contacts: list[tuple[str, dict[str, Any]]] = []
        self.notes: list[dict[str, Any]] = []
        self.tickets: list[dict[str, Any]] = []
        self.ticket_reads: list[str] = []
        """Tickets read one by one (`GET /tickets/{id}`)."""
        self.tasks = {
            "t-late": task("t-late", "overdue", "2026-11-30T10:00:00Z"),
            "t-today": task("t-today", "open", "2026-12-03T10:00:00Z"),
        }
        self.completed: list[tuple[str, dict[str, Any]]] = []
        self.agreements = [
            agreement("HZ-001", "90000", "130000"),
            agreement("HZ-002", "20000", "40000"),
        ]
        self.app = self._app()

    def transport(self) -> httpx.AsyncBaseTransport:
        suite = self

        class Transport(httpx.AsyncBaseTransport):
            inner = httpx.ASGITransport(app=suite.app)

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                if request.url.host in suite.down:
                    raise httpx.ConnectError("connection refused", request=request)
                return await self.inner.handle_async_request(request)

        return Transport()

    def _app(self) -> FastAPI:
        app = FastAPI()
        suite = self

        def who(request: Request) -> dict[str, Any] | None:
            header = request.headers.get("authorization", "")
            return TOKENS.get(header.removeprefix("Bearer "))

        def refuse(status: int, message: str) -> JSONResponse:
            return JSONResponse({"error": "x", "message": message}, status_code=status)

        @app.middleware("http")
        async def guard(request: Request, call_next: Any) -> Any:
            if request.url.hostname in suite.broken:
                return refuse(500, "internal error")
            person = who(request)
            if person is None:
                return refuse(401, "the bearer token is not valid")
            request.state.person = person
            return await call_next(request)

        def has(request: Request, *roles: str) -> bool:
            return bool(set(request.state.person["roles"]) & set(roles))

        @app.get("/me")
        async def me(request: Request) -> Any:
            return {"user": request.state.person["user"], "roles": request.state.person["roles"]}

        @app.get("/customers")
        async def customers(request: Request) -> Any:
            q = request.query_params.get("q")
            items = [] if q and q not in ("+86 13911112222", "13911112222") else [CUSTOMER]
            summary = [
                {
                    **CUSTOMER,
                    "at_risk": True,
                    "order_count": 3,
                    "net_spent": "12345.60",
                    "last_order_at": None,
                }
                for _ in items
            ]
            return {"items": summary, "next_cursor": None}

        @app.get("/customers/{customer_id}")
        async def customer(request: Request, customer_id: str) -> Any:
            if request.url.hostname != "archive":
                return refuse(404, "no such route")
            if customer_id != "c-1":
                return refuse(404, f"no customer {customer_id!r}")
            if suite.version is None:
                return CUSTOMER
            return JSONResponse(CUSTOMER, headers={"ETag": f'"{suite.version}"'})

        @app.get("/customers/{customer_id}/timeline")
        async def timeline(customer_id: str) -> Any:
            items = [
                {
                    "event_id": key,
                    "at": "2026-12-01T10:00:00Z",
                    "type": "contact.logged",
                    "data": {**body, "by": "agent-07"},
                    "summary": body.get("summary"),
                }
                for key, body in suite.contacts
            ]
            return {"items": items, "next_cursor": None}

        @app.post("/customers/{customer_id}/contacts")
        async def contact(request: Request, customer_id: str) -> Any:
            if not has(request, "agent", "supervisor"):
                return refuse(403, "this route needs one of the roles ['agent', 'supervisor']")
            key = request.headers["idempotency-key"]
            if any(k == key for k, _ in suite.contacts):
                return JSONResponse({}, status_code=200)
            suite.contacts.append((key, await request.json()))
            return JSONResponse({}, status_code=201)

        @app.get("/customers/{customer_id}/notes")
        async def notes(customer_id: str) -> Any:
            return {"items": suite.notes, "next_cursor": None}

        @app.post("/customers/{customer_id}/notes")
        async def note(request: Request, customer_id: str) -> Any:
            body = await request.json()
            suite.notes.append(
                {
                    "note_id": "n",
                    "at": "2026-12-01T10:00:00Z",
                    "by": request.state.person["user"],
                    "text": body["text"],
                }
            )
            return JSONResponse(suite.notes[-1], status_code=201)

        @app.patch("/customers/{customer_id}")
        async def patch(request: Request, customer_id: str) -> Any:
            body = await request.json()
            if "account_owner" in body and not has(request, "supervisor"):
                return refuse(403, "this route needs one of the roles ['supervisor']")
            if suite.version is not None:
                match = request.headers.get("if-match")
                if match is None:
                    return refuse(428, "send If-Match")
                if match != f'"{suite.version}"':
                    return refuse(412, "the record changed")
                suite.version += 1
            suite.patches.append(body)
            return CUSTOMER

        @app.get("/accounts/{customer_id}")
        async def account(customer_id: str) -> Any:
            return {
                "customer_id": customer_id,
                "balance": 1200,
                "debt": 0,
                "tier": "silver",
                "next_tier": "gold",
                "points_to_next_tier": 800,
                "expiring_soon": [],
            }

        @app.get("/accounts/{customer_id}/ledger")
        async def ledger(customer_id: str) -> Any:
            return {"items": [], "next_cursor": None}

        @app.get("/tickets")
        async def tickets(request: Request) -> Any:
            wanted = request.query_params.get("status")
            items = [t for t in suite.tickets if wanted in (None, t["status"])]
            return {"items": items, "next_cursor": None}

        @app.get("/tickets/{ticket_id}")
        async def ticket(ticket_id: str) -> Any:
            suite.ticket_reads.append(ticket_id)
            return refuse(404, "no such ticket")

        @app.get("/tasks")
        async def tasks(request: Request) -> Any:
            if not has(request, "agent", "supervisor"):
                return refuse(403, "this route needs one of the roles ['agent', 'supervisor']")
            query = request.query_params
            owner = query.get("owner", "me")
            who = request.state.person["user"] if owner == "me" else owner
            if who != request.state.person["user"] and not has(request, "supervisor"):
                return refuse(403, "agents list their own tasks (owner=me) and the queue's")
            items = [
                t
                for t in suite.tasks.values()
                if who in ("*", t["owner"]) and query.get("status") in (None, t["status"])
            ]
            return {"items": items, "next_cursor": None}

        @app.post("/tasks/{task_id}/complete")
        async def complete(request: Request, task_id: str) -> Any:
            found = suite.tasks.get(task_id)
            if found is None:
                return refuse(404, f"no task {task_id!r}")
            if found["status"] in ("done", "cancelled"):
                return refuse(409, f"task {task_id} is {found['status']}")
            body = await request.json()
            suite.completed.append((task_id, body))
            found.update(status="done", outcome=body["outcome"], completed_by="agent-07")
            return found

        @app.get("/agreements")
        async def agreements() -> Any:
            return {"items": suite.agreements, "next_cursor": None}

        @app.get("/reports/follow-ups")
        async def follow_ups(request: Request) -> Any:
            if not has(request, "supervisor", "ops"):
                return refuse(403, "no")
            row = {"owner": "agent-07", "due": 4, "done_on_time": 2, "done_late": 1}
            return {"since": "2026-11-04", "until": "2026-12-03", "owners": [row]}

        @app.post("/tickets/{ticket_id}/resolve")
        async def resolve(ticket_id: str) -> Any:
            return refuse(409, "the ticket is closed")

        @app.get("/reports/sla")
        async def sla(request: Request) -> Any:
            if not has(request, "supervisor", "ops"):
                return refuse(403, "no")
            return {
                "all": {"tickets": 4, "breached": 1, "breach_rate": 0.25},
                "by_priority": {"P1": {"breach_rate": 0.5}, "P3": {"breach_rate": 0.0}},
            }

        @app.get("/reports/root-causes")
        async def causes() -> Any:
            return {
                "tickets": 1,
                "top": [{"category": "delivery", "root_cause": "晚到", "tickets": 1}],
            }

        @app.get("/reports/liability")
        async def liability() -> Any:
            return {
                "accounts": 1,
                "outstanding_points": 1200,
                "debt_points": 0,
                "expiring_within_30_days": 0,
                "by_expiry_month": {"2027-06": 1200},
            }

        @app.get("/segments/summary")
        async def segments() -> Any:
            return {"grade": {"vip": 1}, "stage": {"active": 1}}

        @app.get("/reports/satisfaction")
        async def satisfaction(request: Request) -> Any:
            if not has(request, "supervisor", "ops"):
                return refuse(403, "no")
            interval = request.query_params.get("interval", "week")
            empty = {
                "responses": 0,
                "csat": {"average": None, "count": 0},
                "nps": {"score": None, "responses": 0},
            }
            answered = {
                "responses": 4,
                "csat": {"average": 4.25, "count": 4},
                "nps": {"score": 50.0, "responses": 4},
            }
            starts = ["2026-11-16T00:00:00+08:00", "2026-11-23T00:00:00+08:00"]
            if interval == "month":
                starts = ["2026-10-01T00:00:00+08:00", "2026-11-01T00:00:00+08:00"]
            return {
                "interval": interval,
                "time_zone": "Asia/Shanghai",
                "all": answered,
                "periods": [{"start": starts[0], **empty}, {"start": starts[1], **answered}],
            }

        @app.get("/dead-letters")
        async def dead_letters(request: Request) -> Any:
            if not has(request, "supervisor", "ops"):
                return refuse(403, "no")
            service = request.url.hostname
            letter = {
                "at": "2026-12-02T09:30:00Z",
                "dlq_partition": 0,
                "dlq_offset": 4,
                "source_topic": "orders.v1",
                "source_partition": 7,
                "source_offset": 1207,
                "last_offset": None,
                "event_id": "e-poison-1",
                "event_type": "order.placed",
                "exception": "EventDecodeError",
                "reason": "invalid event: source: Field required",
                "cut": False,
            }
            items = [letter] if service == "archive" else []
            return {
                "service": service,
                "topic": f"{service}.dlq.v1",
                "total": len(items),
                "items": items,
            }

        @app.get("/audit/pii-reads")
        async def audit(request: Request) -> Any:
            if not has(request, "ops"):
                return refuse(403, "no")
            return {
                "items": [
                    {
                        "id": "1",
                        "at": "2026-12-01T10:00:00Z",
                        "service": request.url.hostname,
                        "actor": "agent-07",
                        "roles": ["agent"],
                        "customer_id": "c-1",
                        "route": "GET /customers/{customer_id}",
                    }
                ],
                "next_cursor": None,
            }

        return app
