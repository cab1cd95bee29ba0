"""What every page needs: the session, the language, CSRF, rendering, and errors in words.

Routes raise `SignInNeeded`, `Refused` (403), `Missing` (404) or `CsrfRefused`; the app's handlers
turn each into a page in the person's language (or a redirect to sign-in). A service's refusal or
absence becomes one sentence (`failure_text`), never a stack trace.
"""

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from crm_console import i18n
from crm_console.sessions import Session, Sessions
from crm_console.settings import ConsoleSettings
from crm_console.upstream import Failure, Services

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "console_session"
SIGNIN_CSRF_COOKIE = "console_signin_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
MAX_FORM_BYTES = 64 * 1024
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'none'; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""On every page: never cached (it shows personal data), no script at all, not framed, forms post
only here."""
ROLE_PAGES = {
    "customers": ("agent", "supervisor", "ops"),
    "tickets": ("agent", "supervisor", "ops"),
    "work": ("agent", "supervisor"),
    "tasks": ("agent", "supervisor"),
    "agreements": ("agent", "supervisor", "ops"),
    "supervisor": ("supervisor",),
    "ops": ("ops",),
}
"""Who sees which page (the services enforce the same roles again on every call)."""


class SignInNeeded(Exception):  # noqa: N818 - a signal, not an error
    """No session (or it ended): to the sign-in page."""


class Refused(Exception):  # noqa: N818
    """The person's roles do not admit this page or action: a 403 page."""


class Missing(Exception):  # noqa: N818
    """No such thing: a 404 page (the text says what)."""


class CsrfRefused(Exception):  # noqa: N818
    """A form without the session's CSRF token: refused with 403."""


@dataclass
class Page:
    """One request's view of the console: who, in which language."""

    request: Request
    session: Session | None
    locale: str

    def t(self, key: str, **values: object) -> str:
        return i18n.translate(self.locale, key, **values)


class Console:
    def __init__(self, settings: ConsoleSettings, services: Services, sessions: Sessions) -> None:
        self.settings = settings
        self.services = services
        self.sessions = sessions
        self.zone = ZoneInfo(settings.time_zone)
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.globals.update(
            money=i18n.money, value_name=i18n.value_name, role_pages=ROLE_PAGES
        )
        self.templates.env.filters["when"] = lambda value: i18n.when(value, self.zone)

    # -- who and which language ------------------------------------------------------------
    def locale_of(self, request: Request) -> str:
        return i18n.negotiate(
            request.cookies.get(i18n.LANG_COOKIE),
            request.headers.get("accept-language"),
            self.settings.default_locale,
        )

    def page(self, request: Request, *roles: str) -> Page:
        """The signed-in person's page; `roles`: any one of them is needed (else 403)."""
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise SignInNeeded
        if roles and not session.has(*roles):
            raise Refused
        return Page(request, session, self.locale_of(request))

    def anonymous(self, request: Request) -> Page:
        return Page(request, None, self.locale_of(request))

    async def form(self, page: Page) -> dict[str, str]:
        """The posted form (urlencoded), after its CSRF token was checked against the session's
        (the form's `csrf` field, or for a script the `X-CSRF-Token` header)."""
        fields = await read_form(page.request)
        presented = fields.get(CSRF_FIELD) or page.request.headers.get(CSRF_HEADER)
        if page.session is None or not page.session.csrf_ok(presented):
            raise CsrfRefused
        return fields

    # -- rendering -------------------------------------------------------------------------
    def render(self, page: Page, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        session = page.session
        response = self.templates.TemplateResponse(
            page.request,
            template,
            {
                "t": page.t,
                "locale": page.locale,
                "session": session,
                "csrf": session.csrf if session else "",
                "flashes": session.take_flashes() if session else [],
                "here": quote(page.request.url.path),
                **context,
            },
            status_code=status,
        )
        response.headers.update(SECURITY_HEADERS)
        return response

    def failure_text(self, page: Page, failure: Failure) -> str:
        """What a person is told about a service's refusal or absence, in their language."""
        service = i18n.value_name(page.locale, "service", failure.service)
        if failure.unavailable:
            return page.t("error.unavailable", service=service)
        detail = failure.message or ""
        match failure.status:
            case 403:
                return page.t("error.forbidden")
            case 404:
                return page.t("error.not_found") + (f" ({detail})" if detail else "")
            case 409:
                return page.t("error.conflict", detail=detail)
            case 401:
                return page.t("signin.expired")
            case 412 | 428:
                return page.t("error.stale")
            case 422:
                fields = ", ".join(p.rsplit(".", 1)[-1] for p in failure.problems) or detail
                return page.t("error.invalid", fields=fields)
            case _:
                return page.t("error.bad_request", detail=detail)

    def back(self, path: str) -> RedirectResponse:
        """After a form: see the page again (POST, redirect, GET)."""
        return RedirectResponse(path, status_code=303)

    # -- cookies ---------------------------------------------------------------------------
    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=self.settings.secure_cookies,
            path="/",
        )

    def signin_csrf(self, request: Request) -> str:
        """The sign-in form's CSRF token: double-submit (a cookie and the form's field)."""
        return request.cookies.get(SIGNIN_CSRF_COOKIE) or secrets.token_urlsafe(32)


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body as a dict (the last value of a repeated name), at most 64 KiB."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise CsrfRefused  # no form of ours is this large
    text = body.decode("utf-8", errors="replace")
    return dict(parse_qsl(text, keep_blank_values=True))


def local_path(target: str | None, default: str = "/customers") -> str:
    """A redirect target from a form or query: a path on this site only (no `//host`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
