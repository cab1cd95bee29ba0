"""The loyalty API (port 8083): balances, ledger, redemptions, goodwill adjustments, liability."""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_loyalty import commands
from crm_loyalty.domain.account import (
    Account,
    IdempotencyKeyReusedError,
    InsufficientPointsError,
    NoAccountError,
)
from crm_loyalty.domain.ledger import STAFF_TEXT_KINDS, Entry
from crm_loyalty.domain.rules import LoyaltyRules, Tier
from crm_loyalty.ports import AccountQueries, AccountRepository
from crm_runtime.audit import PiiAudit
from crm_runtime.auth import Authenticator, Principal
from crm_runtime.http import IdempotencyKey, or_404
from crm_runtime.paging import DEFAULT_LIMIT, MAX_LIMIT, Page, after_key, key_cursor
from crm_runtime.views import view

CustomerId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


class ExpiringView(BaseModel):
    points: int
    expires_at: datetime


class AccountView(BaseModel):
    customer_id: str
    balance: int = Field(description="The sum of the ledger; negative when debt is recorded.")
    debt: int
    tier: Tier
    tier_since: datetime | None
    qualifying_points: int = Field(description="Earned on orders in the rolling window.")
    next_tier: Tier | None
    points_to_next_tier: int | None
    expiring_soon: list[ExpiringView]
    enrolled_at: datetime | None


class EntryView(BaseModel):
    entry_id: str
    seq: int
    kind: str
    points: int
    at: datetime
    balance: int
    order_id: str | None
    redemption_id: str | None
    reason: str | None
    expires_at: datetime | None


class RedemptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(gt=0, le=100_000_000)


class RedemptionView(BaseModel):
    redemption_id: str
    points: int
    balance: int
    entry_id: str


class AdjustmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(ge=-100_000_000, le=100_000_000, description="Not 0; negative deducts.")
    reason: str = Field(min_length=1, max_length=200, description="e.g. service recovery")


class AdjustmentView(BaseModel):
    points: int
    reason: str
    balance: int
    entry_id: str


def account_view(account: Account, now: datetime, rules: LoyaltyRules) -> AccountView:
    qualifying = account.qualifying_points(now, rules)
    nxt = rules.next_tier(account.tier)
    return view(
        AccountView,
        account,
        qualifying_points=qualifying,
        next_tier=nxt,
        points_to_next_tier=(
            max(0, rules.tier_thresholds.get(nxt, 0) - qualifying) if nxt is not None else None
        ),
        expiring_soon=[
            ExpiringView(points=lot.remaining, expires_at=lot.expires_at)
            for lot in account.expiring(now, rules)
        ],
    )


def entry_view(entry: Entry) -> EntryView:
    return view(EntryView, entry)


class Repository(AccountRepository, AccountQueries, Protocol):
    """What the routes need: the commands' repository and the read side."""


def accounts_router(
    repository: Repository,
    auth: Authenticator,
    audit: PiiAudit,
    rules: LoyaltyRules,
    clock: Callable[[], datetime],
) -> APIRouter:
    router = APIRouter(tags=["accounts"])
    reader = auth.require("agent", "supervisor", "ops", "integration")
    redeemer = auth.require("agent", "supervisor", "integration")
    supervisor = auth.require("supervisor")
    reporter = auth.require("supervisor", "ops")

    async def load(customer_id: str) -> Account:
        detail = f"no loyalty account for customer {customer_id!r}"
        return or_404(await repository.get(customer_id), detail)

    @router.get(
        "/accounts/{customer_id}",
        summary="Balance, tier, progress, points expiring.",
        dependencies=[Depends(reader)],
    )
    async def get_account(customer_id: CustomerId) -> AccountView:
        return account_view(await load(customer_id), clock(), rules)

    @router.get("/accounts/{customer_id}/ledger", summary="The ledger, newest first, by cursor.")
    async def get_ledger(
        customer_id: CustomerId,
        principal: Annotated[Principal, Depends(reader)],
        limit: Limit = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[EntryView]:
        if not await repository.exists(customer_id):
            raise HTTPException(404, f"no loyalty account for customer {customer_id!r}")
        before = after_key(cursor, "seq", int)
        entries = await repository.ledger_page(customer_id, before, limit)
        if any(e.reason and e.kind in STAFF_TEXT_KINDS for e in entries):
            # a staff-typed reason may name the person
            await audit.record(principal, "GET /accounts/{customer_id}/ledger", [customer_id])
        items = [entry_view(d) for d in entries]
        next_cursor = key_cursor("seq", items[-1].seq if items else None, len(items), limit)
        return Page[EntryView](items=items, next_cursor=next_cursor)

    @router.post(
        "/accounts/{customer_id}/redemptions",
        status_code=201,
        summary="Spend points (earliest-expiring first). Never overdraws: 409 if short.",
        responses={
            200: {"description": "A retry with the same Idempotency-Key: the first result."},
            409: {"description": "Not enough points, or the key was used for another amount."},
        },
        dependencies=[Depends(redeemer)],
    )
    async def redeem(
        customer_id: CustomerId,
        request: RedemptionRequest,
        key: IdempotencyKey,
        response: Response,
    ) -> RedemptionView:
        command = commands.Redeem(customer_id, request.points, key)
        try:
            done = await commands.redeem(command, repository, clock)
        except NoAccountError as exc:
            raise HTTPException(404, f"no loyalty account for customer {customer_id!r}") from exc
        except IdempotencyKeyReusedError as exc:
            raise HTTPException(409, str(exc)) from exc
        except InsufficientPointsError as exc:
            raise HTTPException(
                409, f"not enough points: {exc.wanted} asked, the balance is {exc.balance}"
            ) from exc
        response.status_code = 200 if done.replayed else 201
        return view(RedemptionView, done.entry, redemption_id=key, points=-done.entry.points)

    @router.post(
        "/accounts/{customer_id}/adjustments",
        status_code=201,
        summary="Goodwill points (service recovery) or a correction, with a reason. Supervisor.",
        responses={200: {"description": "A retry with the same Idempotency-Key."}},
    )
    async def adjust(
        customer_id: CustomerId,
        request: AdjustmentRequest,
        key: IdempotencyKey,
        response: Response,
        principal: Annotated[Principal, Depends(supervisor)],
    ) -> AdjustmentView:
        if request.points == 0:
            raise HTTPException(422, "points may not be 0")
        reason = f"{request.reason} (by {principal.user})"
        command = commands.Adjust(customer_id, request.points, reason, key)
        try:
            done = await commands.adjust(command, repository, clock, rules)
        except IdempotencyKeyReusedError as exc:
            raise HTTPException(409, str(exc)) from exc
        except InsufficientPointsError as exc:
            raise HTTPException(
                409, f"cannot deduct {exc.wanted} points: the balance is {exc.balance}"
            ) from exc
        if done.replayed:  # a replay reads the stored reason back
            await audit.record(principal, "POST /accounts/{customer_id}/adjustments", [customer_id])
        response.status_code = 200 if done.replayed else 201
        return view(AdjustmentView, done.entry, reason=done.entry.reason or "")

    @router.get(
        "/reports/liability",
        summary="Outstanding points and their expiry profile.",
        dependencies=[Depends(reporter)],
    )
    async def liability() -> dict[str, Any]:
        return await repository.liability(clock())

    return router
