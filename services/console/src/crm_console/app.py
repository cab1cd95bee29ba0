"""The console's one wiring place: settings -> the services' client, the sessions, the pages."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_console import pages
from crm_console.sessions import Sessions
from crm_console.settings import ConsoleSettings
from crm_console.upstream import Services, UpstreamMetrics
from crm_console.web import HERE, Console, CsrfRefused, Missing, Refused, SignInNeeded

log = logging.getLogger(__name__)


def build_app(
    settings: ConsoleSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """`transport`: how the services are reached (tests pass in-process fakes)."""
    registry = CollectorRegistry()
    services = Services(
        settings.service_urls(), settings.request_timeout_s, UpstreamMetrics(registry), transport
    )
    console = Console(settings, services, Sessions(settings.session_idle_s, settings.max_sessions))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await services.close()

    app = FastAPI(
        title="CRM console",
        description="Pages for agents, account owners, supervisors and ops.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.console = console
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router(console))

    @app.get("/healthz", summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "console"}

    @app.get("/readyz", summary="Readiness: the console needs nothing of its own to serve.")
    async def readyz() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/metrics", summary="Prometheus metrics.")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    install_error_pages(app, console)
    return app


def install_error_pages(app: FastAPI, console: Console) -> None:
    """Every error is a page in the person's language (never a stack trace)."""

    def error_page(request: Request, status: int, key: str) -> Response:
        page = console.anonymous(request)
        page.session = console.sessions.get(request.cookies.get("console_session"))
        return console.render(page, "error.html", status, message=page.t(key))

    @app.exception_handler(SignInNeeded)
    async def signin_needed(request: Request, exc: SignInNeeded) -> Response:
        if request.method != "GET":
            return error_page(request, 401, "signin.expired")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?next={quote(target)}", status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return error_page(request, 403, "error.forbidden")

    @app.exception_handler(CsrfRefused)
    async def csrf(request: Request, exc: CsrfRefused) -> Response:
        return error_page(request, 403, "error.csrf")

    @app.exception_handler(Missing)
    async def missing(request: Request, exc: Missing) -> Response:
        return error_page(request, 404, "error.not_found")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_page(request, 404, "error.page_not_found")
        if exc.status_code == 422:
            return error_page(request, 422, "error.not_found")
        return error_page(request, exc.status_code, "error.internal")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_page(request, 404, "error.not_found")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        try:
            return error_page(request, 500, "error.internal")
        except Exception:
            return PlainTextResponse("internal error", status_code=500)
