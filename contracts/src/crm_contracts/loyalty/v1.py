"""`loyalty.v1`: points and tiers, published by the loyalty service.

`subject` is the customer id. Points are integers; `balance` is the account balance after the
change (it may be negative: recorded debt after a refund of spent points).
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_contracts.types import Identifier

POINTS_EARNED = "points.earned"
POINTS_REDEEMED = "points.redeemed"
POINTS_REVERSED = "points.reversed"
POINTS_EXPIRED = "points.expired"
POINTS_ADJUSTED = "points.adjusted"
POINTS_EXPIRING_SOON = "points.expiring_soon"
TIER_CHANGED = "tier.changed"

Tier = Literal["standard", "silver", "gold", "diamond"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PointsEarned(_Payload):
    points: int = Field(ge=0)
    reason: Literal["order", "welcome", "birthday", "promotion"] = "order"
    order_id: Identifier | None = None
    expires_at: datetime | None = None
    balance: int


class PointsRedeemed(_Payload):
    points: int = Field(gt=0)
    redemption_id: Identifier
    balance: int


class PointsReversed(_Payload):
    points: int = Field(gt=0)
    order_id: Identifier
    reason: Literal["refund", "cancellation"]
    balance: int


class PointsExpired(_Payload):
    points: int = Field(gt=0)
    balance: int


class PointsAdjusted(_Payload):
    points: int = Field(description="Positive (goodwill) or negative.")
    reason: str = Field(
        min_length=1,
        max_length=200,
        description="`goodwill` (points added) or `correction` (points taken); the staff's own "
        "text may hold personal data and stays in the ledger (sealed).",
    )
    balance: int


class PointsExpiringSoon(_Payload):
    points: int = Field(gt=0)
    expires_at: datetime


class TierChanged(_Payload):
    tier: Tier
    previous_tier: Tier
    qualifying_points: int = Field(ge=0)


EVENTS: dict[str, type[BaseModel]] = {
    POINTS_EARNED: PointsEarned,
    POINTS_REDEEMED: PointsRedeemed,
    POINTS_REVERSED: PointsReversed,
    POINTS_EXPIRED: PointsExpired,
    POINTS_ADJUSTED: PointsAdjusted,
    POINTS_EXPIRING_SOON: PointsExpiringSoon,
    TIER_CHANGED: TierChanged,
}
