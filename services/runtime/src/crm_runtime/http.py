"""The HTTP face of a service: FastAPI whose lifespan runs the runtime (and so the broker).

Every service serves `/healthz` (alive), `/readyz` (database, broker, partitions assigned, no
retrying failure), `/metrics` (Prometheus), `/asyncapi` and `/asyncapi.json` (try-it-out off), and
its own routers. Errors are JSON `{"error": ..., "message": ...}`; a bad request is a 4xx, never a
500. Before any route, `RequestGuard` checks the token, the body's size and the load.
"""

import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from faststream.specification.asyncapi import get_asyncapi_html
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_runtime.asyncapi import (
    ServiceDocument,
    declare_publications,
    publications_of,
    service_document,
)
from crm_runtime.auth import Authenticator, Principal
from crm_runtime.crypto import MasterKeyMissingError
from crm_runtime.dlq_tail import LIST_MAX, DeadLetterUnavailableError
from crm_runtime.errors import is_transient
from crm_runtime.guard import RequestGuard
from crm_runtime.paging import DEFAULT_LIMIT, MAX_LIMIT, Page, after_id, id_cursor
from crm_runtime.runtime import Runtime
from crm_runtime.settings import ROLES

log = logging.getLogger(__name__)

ERROR_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    422: "invalid_request",
    428: "precondition_required",
    503: "unavailable",
}


T = TypeVar("T")

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        pattern=r"^[^\s]+$",
        description="Chosen by the caller; a retry with the same key returns the first result.",
    ),
]
"""The `Idempotency-Key` header of a command a caller may retry."""


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=100,
        description='The record\'s version as its `ETag` gave it (`"7"`); `*`: any version.',
    ),
]
"""The `If-Match` header of a change made on a version the caller read (optimistic)."""


def etag(version: int) -> str:
    """A record's `ETag`: its version, quoted (`"7"`)."""
    return f'"{version}"'


def expected_version(if_match: str | None) -> int | None:
    """The version an `If-Match` header names (None for `*`): 428 when the header is missing,
    400 when it names no version (`"7"`, or weak `W/"7"`)."""
    if if_match is None:
        raise HTTPException(428, 'send If-Match with the ETag of the record you read (e.g. "7")')
    tag = if_match.strip()
    if tag == "*":
        return None
    found = re.fullmatch(r'(?:W/)?"?([0-9]{1,18})"?', tag)
    if found is None:
        raise HTTPException(400, f'If-Match {if_match!r} is not an ETag of this API (e.g. "7")')
    return int(found.group(1))


def or_404(found: T | None, detail: str) -> T:
    """What a route looked up, or a 404 with `detail` ("no customer 'c-1'") when it is not there."""
    if found is None:
        raise HTTPException(404, detail)
    return found


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": ERROR_NAMES.get(status, "error"), "message": message, **extra}


def create_http_app(
    runtime: Runtime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    version: str = "0.1.0",
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan)
    app.state.runtime = runtime
    app.add_middleware(
        RequestGuard,
        auth=runtime.auth,
        max_body_bytes=runtime.settings.http_max_body_bytes,
        max_concurrent=runtime.settings.http_max_concurrent_requests,
    )
    _install_error_handlers(app)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.service}

    @app.get("/readyz", tags=["operations"], summary="Readiness: broker, database, consumer.")
    async def readyz() -> JSONResponse:
        report = await runtime.readiness()
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics.")
    async def metrics() -> Response:
        await runtime.refresh_gauges()  # never raises: a failing source keeps its last values
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    declare_publications(runtime.broker, runtime.service, publications_of(runtime.service))

    def specification() -> ServiceDocument:
        return service_document(
            runtime.broker, title=f"{title} (Kafka)", version=version, description=description
        )

    @app.get("/asyncapi.json", tags=["operations"], summary="AsyncAPI document (JSON).")
    async def asyncapi_json() -> Response:
        return Response(specification().to_json(), media_type="application/json")

    @app.get("/asyncapi", tags=["operations"], summary="AsyncAPI document (HTML, no try-it-out).")
    async def asyncapi_html() -> HTMLResponse:
        return HTMLResponse(get_asyncapi_html(specification(), try_it_out_path=None))

    ops = runtime.auth.require("ops")

    @app.post(
        "/ops/sweeps/{name}",
        tags=["operations"],
        summary="Run a periodic sweep now (ops). `at` runs it as of another time, when allowed.",
        responses={
            404: {"description": "No such sweep."},
            409: {"description": "Running elsewhere."},
        },
        dependencies=[Depends(ops)],
    )
    async def run_sweep(
        name: str,
        at: Annotated[AwareDatetime | None, Query(description="RFC 3339 with zone")] = None,
    ) -> dict[str, Any]:
        if name not in runtime.sweeps.sweeps:
            raise HTTPException(404, f"no sweep {name!r}; known: {sorted(runtime.sweeps.sweeps)}")
        if at is not None and not runtime.settings.clock_override_enabled:
            raise HTTPException(403, "running a sweep as of another time is disabled here")
        changed = await runtime.sweeps.run_once(name, at)
        if changed is None:
            raise HTTPException(409, f"sweep {name!r} is running on another replica")
        return {"sweep": name, "changed": changed, "at": (at or runtime.sweeps.clock()).isoformat()}

    @app.get(
        "/audit/pii-reads",
        tags=["operations"],
        summary="Who read which customer's personal data, newest first (ops).",
        dependencies=[Depends(ops)],
    )
    async def pii_reads(
        customer_id: Annotated[str | None, Query(max_length=128)] = None,
        actor: Annotated[str | None, Query(max_length=64, description="user id")] = None,
        since: Annotated[AwareDatetime | None, Query(description="RFC 3339 with zone")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[PiiRead]:
        docs = await runtime.audit.find(
            customer_id=customer_id,
            actor=actor,
            since=since,
            before_id=after_id(cursor),
            limit=limit,
        )
        items = [PiiRead.model_validate(doc) for doc in docs]
        return Page[PiiRead](
            items=items, next_cursor=id_cursor(docs[-1]["_id"] if docs else None, len(docs), limit)
        )

    @app.get(
        "/dead-letters",
        tags=["operations"],
        summary="This service's newest dead letters, newest first: when, from where, why; "
        "never their payload (supervisor, ops).",
        responses={503: {"description": "The broker did not answer in time."}},
        dependencies=[Depends(runtime.auth.require("supervisor", "ops"))],
    )
    async def dead_letters(
        limit: Annotated[int, Query(ge=1, le=LIST_MAX)] = 50,
    ) -> DeadLetterPage:
        try:
            found = await runtime.dead_letter_tail.newest(limit)
        except DeadLetterUnavailableError as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from exc
        return DeadLetterPage(
            service=runtime.service,
            topic=found.topic,
            total=found.total,
            items=[DeadLetterView.model_validate(letter) for letter in found.letters],
        )

    @app.post(
        "/ops/keys/rewrap",
        tags=["operations"],
        summary="Key rotation: re-wrap data keys still under an old master key (ops).",
        dependencies=[Depends(ops)],
    )
    async def rewrap(
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> dict[str, Any]:
        done, failed = await runtime.keys.rewrap(limit)
        return {
            "rewrapped": done,
            "failed": failed,
            "current_master_key": runtime.keys.ring.current,
        }

    app.include_router(me_router(runtime.auth))
    for router in routers:
        app.include_router(router)
    return app


class Me(BaseModel):
    """Who a bearer token names (ADR 0010)."""

    user: str = Field(description="The user id that records name.")
    roles: list[str] = Field(description="Sorted.")


def me_router(auth: Authenticator) -> APIRouter:
    """`GET /me`: who the caller's token names and its roles (the console asks at sign-in)."""
    router = APIRouter(tags=["identity"])
    anyone = auth.require(*ROLES)

    @router.get("/me", summary="Who the bearer token names: the user id and roles (any role).")
    async def me(principal: Annotated[Principal, Depends(anyone)]) -> Me:
        return Me(user=principal.user, roles=sorted(principal.roles))

    return router


class PiiRead(BaseModel):
    """One read of a customer's personal data."""

    id: str = Field(validation_alias="_id")
    at: datetime
    service: str
    actor: str = Field(
        description="The user id of the reader (for a token granting only roles, its token_id)."
    )
    token_id: str | None = Field(
        default=None,
        description="The token used: the first 12 hex digits of its SHA-256 (absent in reads "
        "recorded before tokens named a person).",
    )
    roles: list[str]
    customer_id: str
    route: str


class DeadLetterView(BaseModel):
    """One dead letter, by its headers: never its key or value (they may hold personal data)."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime | None = Field(description="When it was dead-lettered.")
    dlq_partition: int
    dlq_offset: int
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    last_offset: int | None = Field(
        description="An unreadable record batch: the letter stands for the source offsets from "
        "`source_offset` to this one."
    )
    event_id: str | None = Field(description="The event's `id`, when the value gives one.")
    event_type: str | None = Field(description="The event's `type`, when the value gives one.")
    exception: str | None = Field(description="The exception's class name.")
    reason: str = Field(description="Why, clipped, e-mail addresses and phone numbers masked.")
    cut: bool = Field(description="The letter kept only part of the original message.")


class DeadLetterPage(BaseModel):
    service: str
    topic: str = Field(description="`<service>.dlq.v1`.")
    total: int = Field(description="Letters the topic holds now (kept two weeks).")
    items: list[DeadLetterView] = Field(description="The newest, newest first.")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # A detail may be {"message": ..., **more}: the answer carries the more (e.g. the ids
        # of the records a conflict is with).
        more = dict(exc.detail) if isinstance(exc.detail, dict) else {"message": exc.detail}
        return JSONResponse(
            error_body(exc.status_code, str(more.pop("message", "")), **more),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        return JSONResponse(
            error_body(422, "the request is not valid", problems=problems), status_code=422
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, MasterKeyMissingError):
            # A configuration fault of this replica (a rotation's new master key not given to
            # it yet), not the caller's: 503, counted for the alert; the log names the key id.
            runtime: Runtime = request.app.state.runtime
            runtime.metrics.master_key_missing.labels(runtime.service, exc.key_id).inc()
            log.error("master key missing", extra={"path": request.url.path, "key_id": exc.key_id})
            return JSONResponse(
                error_body(
                    503,
                    "this replica cannot open the data yet (a master key is being rotated), "
                    "retry shortly",
                ),
                status_code=503,
                headers={"Retry-After": "5"},
            )
        if is_transient(exc):
            return JSONResponse(
                error_body(503, "a dependency is unavailable, retry shortly"),
                status_code=503,
                headers={"Retry-After": "5"},
            )
        log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse(error_body(500, "internal error"), status_code=500)
