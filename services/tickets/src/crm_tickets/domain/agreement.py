"""A customer's agreement (协议), as far as tickets care: the complaint first-response SLA it
promises, in business hours, while it is active (`relations.v1`).

Pure code. A ticket takes the strictest first response of the agreements active on the day it
opens (in the calendar's zone), when that is stricter than its priority's: an agreement promises
at least its level, it never makes an urgent ticket slower.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime

from crm_tickets.domain.calendar import BusinessCalendar


@dataclass(frozen=True)
class AgreementSla:
    agreement_id: str
    customer_id: str
    starts_on: date
    ends_on: date
    """Active from `starts_on` to `ends_on`, both days included; a termination moves the end."""
    first_response_hours: int | None
    """Business hours to the first response; None: the agreement sets no service level."""

    def amended(self, ends_on: date, first_response_hours: int | None) -> "AgreementSla":
        return replace(self, ends_on=ends_on, first_response_hours=first_response_hours)

    def renewed(self, starts_on: date, ends_on: date) -> "AgreementSla":
        return replace(self, starts_on=starts_on, ends_on=ends_on)

    def terminated(self, on: date) -> "AgreementSla":
        return replace(self, ends_on=min(self.ends_on, on))


def agreement_first_response_s(
    agreements: Iterable[AgreementSla], at: datetime, calendar: BusinessCalendar
) -> int | None:
    """The first-response target (business seconds) the customer's agreements active at `at`
    promise: the strictest; None when none is active or none sets one."""
    day = calendar.local_date(at)
    hours = [
        a.first_response_hours
        for a in agreements
        if a.first_response_hours is not None and a.starts_on <= day <= a.ends_on
    ]
    return min(hours) * 3600 if hours else None
