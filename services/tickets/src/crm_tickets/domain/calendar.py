"""A business calendar: working hours in a time zone, holidays, and make-up working days (调休).

The arithmetic is `crm_runtime.calendar` (pure, stdlib only), shared with relations' due dates so
both services agree on what a business hour and a business day are; tickets' rules nest it as
`calendar` (`CRM_TICKETS_RULES__CALENDAR__<NAME>`).
"""

from crm_runtime.calendar import MAX_DAYS, BusinessCalendar

__all__ = ["MAX_DAYS", "BusinessCalendar"]
