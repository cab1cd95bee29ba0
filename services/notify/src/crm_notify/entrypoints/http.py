"""The notify API (port 8084): notifications and their history, preferences, template preview."""

import dataclasses
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_notify import commands
from crm_notify.domain.notification import Notification
from crm_notify.domain.policy import Preferences, Status
from crm_notify.domain.templates import LOCALES, TEMPLATES, Locale, RenderError, render
from crm_notify.ports import NotifyQueries, NotifyRepository
from crm_runtime.audit import PiiAudit
from crm_runtime.auth import Authenticator, Principal
from crm_runtime.paging import DEFAULT_LIMIT, MAX_LIMIT, Page, after_id, id_cursor, present
from crm_runtime.views import view

CustomerId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
ChannelName = Literal["email", "sms"]


class PreferencesView(BaseModel):
    customer_id: str
    registered: bool
    locale: str
    time_zone: str
    consents: dict[str, dict[str, bool]]
    opted_out: list[str]
    has_email: bool
    has_phone: bool
    version: int = Field(description="Also the `ETag`: send it back as `If-Match` to change them.")


class PreferencesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    locale: Locale | None = None
    time_zone: str | None = Field(default=None, max_length=64)
    opted_out: list[ChannelName] | None = Field(default=None, description="Channels refused.")


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    locale: Locale = "zh-CN"
    variables: dict[str, Any] | None = Field(
        default=None, description="Omit to use the template's sample data."
    )


def etag(version: int) -> str:
    return f'"{version}"'


def version_of(if_match: str) -> int | None:
    """The version an If-Match names (`"3"`, or weak `W/"3"`); None when it names none."""
    tag = if_match.strip().removeprefix("W/")
    if len(tag) < 3 or not (tag.startswith('"') and tag.endswith('"')):
        return None
    digits = tag[1:-1]
    return int(digits) if digits.isdigit() and len(digits) <= 18 else None


def preferences_view(p: Preferences) -> PreferencesView:
    return view(PreferencesView, p, has_email=p.email is not None, has_phone=p.phone is not None)


def notification_view(n: Notification) -> dict[str, Any]:
    return {
        "id": n.notification_id,
        "customer_id": n.customer_id,
        "template": n.template,
        "purpose": n.purpose,
        "locale": n.locale,
        "channel": n.channel,
        "to": n.to,
        "subject": n.subject,
        "body": n.body,
        "status": n.status,
        "attempts": n.attempts,
        "next_attempt_at": n.next_attempt_at,
        "awaiting_until": n.awaiting_until,  # awaiting the customer's registration until then
        "occurred_at": n.occurred_at,  # when its cause happened: what `stale` is measured from
        "provider": n.provider,
        "cause": n.cause,
        "created_at": n.created_at,
        "history": [{"at": h.at, "status": h.status, "reason": h.reason} for h in n.history],
    }


class Repository(NotifyRepository, NotifyQueries, Protocol):
    """What the routes need: the commands' repository and the read side."""


def notify_router(repository: Repository, auth: Authenticator, audit: PiiAudit) -> APIRouter:
    router = APIRouter()
    reader = auth.require("agent", "supervisor", "ops")
    agent = auth.require("agent", "supervisor")
    ops = auth.require("ops", "supervisor")

    @router.get(
        "/notifications",
        tags=["notifications"],
        summary="Paged by cursor.",
        dependencies=[Depends(reader)],
    )
    async def list_notifications(
        customer_id: Annotated[str | None, Query(max_length=128)] = None,
        status: Status | None = None,
        template: Annotated[str | None, Query(max_length=64)] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        filters = present(customer_id=customer_id, status=status, template=template)
        found = await repository.find(filters, after_id(cursor), limit)
        items = [dataclasses.asdict(summary) for summary in found]
        next_cursor = id_cursor(items[-1]["id"] if items else None, len(items), limit)
        return Page[dict[str, Any]](items=items, next_cursor=next_cursor)

    @router.get("/notifications/{notification_id}", tags=["notifications"])
    async def get_notification(
        notification_id: Annotated[str, Path(max_length=64)],
        principal: Annotated[Principal, Depends(reader)],
    ) -> dict[str, Any]:
        notification = await repository.get(notification_id)
        if notification is None:
            raise HTTPException(404, f"no notification {notification_id!r}")
        await audit.record(
            principal, "GET /notifications/{notification_id}", [notification.customer_id]
        )
        return notification_view(notification)

    @router.get(
        "/preferences/{customer_id}",
        tags=["preferences"],
        summary="With an ETag: the version a PUT must name in If-Match.",
        dependencies=[Depends(reader)],
    )
    async def get_preferences(customer_id: CustomerId, response: Response) -> PreferencesView:
        found = (await repository.preferences([customer_id])).get(customer_id)
        if found is None:
            raise HTTPException(404, f"no preferences for customer {customer_id!r}")
        response.headers["ETag"] = etag(found.version)
        return preferences_view(found)

    @router.put(
        "/preferences/{customer_id}",
        tags=["preferences"],
        summary="Locale, zone, opt-outs; If-Match the ETag read (412 stale, 428 missing).",
        dependencies=[Depends(agent)],
        responses={
            412: {"description": "Changed since read (by staff or a member event): read again."},
            428: {"description": "No If-Match: GET the preferences and send their ETag."},
        },
    )
    async def put_preferences(
        customer_id: CustomerId,
        update: PreferencesUpdate,
        response: Response,
        if_match: Annotated[str | None, Header(max_length=64)] = None,
    ) -> PreferencesView:
        if if_match is None:
            raise HTTPException(428, "If-Match is required: the ETag of GET /preferences/{id}")
        version = version_of(if_match)
        if version is None:
            raise HTTPException(412, f"If-Match {if_match!r} is not an ETag of these preferences")
        command = commands.UpdatePreferences(
            customer_id, version, update.locale, update.time_zone, update.opted_out
        )
        try:
            found = await commands.update_preferences(command, repository)
        except commands.NoPreferencesError as exc:
            raise HTTPException(404, f"no preferences for customer {customer_id!r}") from exc
        except commands.StalePreferencesError as exc:
            raise HTTPException(
                412,
                f"the preferences changed since read (now {etag(exc.current)}): read them again",
                headers={"ETag": etag(exc.current)},
            ) from exc
        except commands.UnknownTimeZoneError as exc:
            raise HTTPException(422, str(exc)) from exc
        response.headers["ETag"] = etag(found.version)
        return preferences_view(found)

    @router.post(
        "/templates/{name}/preview",
        tags=["templates"],
        summary="Render (ops).",
        dependencies=[Depends(ops)],
    )
    async def preview(
        name: Annotated[str, Path(max_length=64)],
        request: PreviewRequest,
    ) -> dict[str, Any]:
        template = TEMPLATES.get(name)
        if template is None:
            raise HTTPException(404, f"no template {name!r}; known: {sorted(TEMPLATES)}")
        variables = template.sample if request.variables is None else request.variables
        try:
            rendered = render(name, request.locale, variables)
        except RenderError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {
            "template": name,
            "locale": request.locale,
            "locales": list(LOCALES),
            "subject": rendered.subject,
            "body": rendered.body,
        }

    return router
