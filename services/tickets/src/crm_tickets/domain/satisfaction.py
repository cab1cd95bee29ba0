"""Satisfaction: what a survey's CSAT and NPS answers add up to, per week or month.

CSAT is the mean score (1-5) of the answers that give one. NPS is the share of promoters (9-10)
minus the share of detractors (0-6) of the answers that give a score, in percent (-100..100);
7-8 are passive. Periods are calendar weeks (from Monday 00:00) or months (from the 1st) in the
business calendar's zone.
"""

from dataclasses import dataclass, fields
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

Interval = Literal["week", "month"]
PROMOTER, DETRACTOR = 9, 6
"""NPS: 9-10 promote, 0-6 detract, 7-8 are passive."""


def period_starts(
    since: datetime, until: datetime, interval: Interval, zone: ZoneInfo
) -> list[datetime]:
    """The starts of the periods [since, until) spans, in `zone` (a week starts on Monday at
    00:00, a month on its 1st), and the first start at or after `until` to close the last."""
    day = since.astimezone(zone).date()
    first = day - timedelta(days=day.weekday()) if interval == "week" else day.replace(day=1)
    starts = [datetime.combine(first, time(0), tzinfo=zone)]
    while starts[-1] < until:
        last = starts[-1].date()
        following = (
            last + timedelta(days=7)
            if interval == "week"
            else (last.replace(day=28) + timedelta(days=4)).replace(day=1)
        )
        starts.append(datetime.combine(following, time(0), tzinfo=zone))
    return starts


@dataclass(frozen=True)
class SatisfactionFigures:
    responses: int = 0
    csat_total: int = 0
    csat_count: int = 0
    promoters: int = 0
    detractors: int = 0
    nps_count: int = 0

    @staticmethod
    def of(row: dict[str, Any]) -> "SatisfactionFigures":
        return SatisfactionFigures(
            *(int(row.get(f.name) or 0) for f in fields(SatisfactionFigures))
        )

    def __add__(self, other: "SatisfactionFigures") -> "SatisfactionFigures":
        return SatisfactionFigures(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )

    def summary(self) -> dict[str, Any]:
        """CSAT: the mean score (1-5) of the answers giving one; NPS: % promoters - %
        detractors of the answers giving a score (-100..100); None where there are none."""
        return {
            "responses": self.responses,
            "csat": {
                "average": round(self.csat_total / self.csat_count, 2) if self.csat_count else None,
                "count": self.csat_count,
            },
            "nps": {
                "score": (
                    round(100 * (self.promoters - self.detractors) / self.nps_count, 1)
                    if self.nps_count
                    else None
                ),
                "responses": self.nps_count,
                "promoters": self.promoters,
                "passives": self.nps_count - self.promoters - self.detractors,
                "detractors": self.detractors,
            },
        }
