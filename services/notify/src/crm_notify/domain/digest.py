"""A customer's points digest: what they earned on one local day, sent the next day as one
message."""

from dataclasses import dataclass
from datetime import date


@dataclass
class Digest:
    """Points earned by a customer on one local day, sent the next day as one message."""

    customer_id: str
    day: date
    points: int = 0
    orders: int = 0
    balance: int = 0

    @property
    def digest_id(self) -> str:
        return f"{self.customer_id}/{self.day.isoformat()}"
