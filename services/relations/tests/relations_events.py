"""Inbound events for the unit tests, as the archive, the member system, tickets and the order
system publish them."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from crm_contracts import CloudEvent, new_event
from crm_contracts.archive import v1 as archive_v1
from crm_contracts.members import v1 as members_v1
from crm_contracts.orders import v1 as orders_v1
from crm_contracts.tickets import v1 as tickets_v1


def event(
    event_type: str, customer: str, data: BaseModel, at: datetime, source: str
) -> CloudEvent[Any]:
    return new_event(event_type, source=source, subject=customer, data=data, time=at)


def registered(customer: str, at: datetime, owner: str | None = None) -> CloudEvent[Any]:
    data = members_v1.CustomerRegistered.model_validate(
        {"name": "张三", "phone": "+8613800000000", "account_owner": owner}
    )
    return event(members_v1.CUSTOMER_REGISTERED, customer, data, at, "member-system")


def owner_changed(customer: str, at: datetime, owner: str | None) -> CloudEvent[Any]:
    data = members_v1.CustomerProfileUpdated.model_validate({"account_owner": owner})
    return event(members_v1.CUSTOMER_PROFILE_UPDATED, customer, data, at, "member-system")


def created(customer: str, at: datetime, stage: str = "new") -> CloudEvent[Any]:
    data = archive_v1.CustomerCreated.model_validate(
        {"stage": stage, "stub": False, "cause_event_type": "customer.registered"}
    )
    return event(archive_v1.CUSTOMER_CREATED, customer, data, at, "crm/archive")


def graded(customer: str, at: datetime, grade: str) -> CloudEvent[Any]:
    data = archive_v1.CustomerGradeChanged.model_validate({"grade": grade})
    return event(archive_v1.CUSTOMER_GRADE_CHANGED, customer, data, at, "crm/archive")


def churn_risk(customer: str, at: datetime) -> CloudEvent[Any]:
    data = archive_v1.CustomerChurnRiskRaised(reasons=["purchase_interval"], detected_at=at)
    return event(archive_v1.CUSTOMER_CHURN_RISK_RAISED, customer, data, at, "crm/archive")


def csat(customer: str, at: datetime, score: int) -> CloudEvent[Any]:
    data = tickets_v1.TicketCsatRecorded(
        ticket_id="T-1", survey_id="S-1", csat=score, flagged_for_review=score <= 2
    )
    return event(tickets_v1.TICKET_CSAT_RECORDED, customer, data, at, "crm/tickets")


def erasure(customer: str, at: datetime) -> CloudEvent[Any]:
    data = members_v1.CustomerErasureRequested.model_validate({})
    return event(members_v1.CUSTOMER_ERASURE_REQUESTED, customer, data, at, "member-system")


def placed(
    customer: str, order: str, amount: str, at: datetime, currency: str = "CNY"
) -> CloudEvent[Any]:
    data = orders_v1.OrderPlaced(order_id=order, amount=Decimal(amount), currency=currency)
    return event(orders_v1.ORDER_PLACED, customer, data, at, "order-system")


def refunded(customer: str, order: str, amount: str, at: datetime) -> CloudEvent[Any]:
    data = orders_v1.OrderRefunded(order_id=order, amount=Decimal(amount))
    return event(orders_v1.ORDER_REFUNDED, customer, data, at, "order-system")


def cancelled(customer: str, order: str, at: datetime) -> CloudEvent[Any]:
    data = orders_v1.OrderCancelled(order_id=order)
    return event(orders_v1.ORDER_CANCELLED, customer, data, at, "order-system")
