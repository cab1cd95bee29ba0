"""How a ticket is stored: free text (description, comments, a reopening's reason) sealed with the
customer's key, everything else plain for queries and reports; a shredded key opens nothing."""

import os
from datetime import timedelta

import bson
import pytest
from test_tickets_flow import RULES, T0

from crm_runtime.crypto import FieldCipher
from crm_tickets.adapters.documents import from_document, to_document
from crm_tickets.domain.ticket import Ticket

pytestmark = pytest.mark.unit
PHONE, NAME = "13800138000", "张三丰"


def worked_ticket() -> Ticket:
    ticket, _ = Ticket.open(
        "T-1",
        "c1",
        T0,
        channel="phone",
        category="delivery",
        severity="high",
        grade=None,
        rules=RULES,
        actor="a1",
        description=f"{NAME} 来电，回拨 {PHONE}",
    )
    ticket.comment("m1", "a1", f"已联系 {NAME}", T0 + timedelta(minutes=5), public=True)
    ticket.resolve(["carrier"], "a1", T0 + timedelta(hours=1), summary=f"补发给 {NAME}")
    ticket.reopen(f"{NAME} 说仍未收到", "a1", T0 + timedelta(hours=2), RULES)
    return ticket


def test_free_text_is_sealed_and_the_figures_stay_plain() -> None:
    ticket = worked_ticket()
    cipher = FieldCipher("c1", os.urandom(32))
    figures = ticket.figures(T0 + timedelta(hours=3), RULES)
    document = to_document(ticket, figures, cipher)
    raw = bson.encode(document)
    assert PHONE.encode() not in raw
    assert NAME.encode() not in raw
    assert document["priority"] == ticket.priority
    assert document["category"] == "delivery"
    assert (document["first_response_s"], document["resolution_s"]) == (300, None)
    assert document["next_check_at"] == figures.next_check_at
    back = from_document({**document, "version": 0}, cipher)
    assert back.description == ticket.description
    assert [c.text for c in back.comments] == [c.text for c in ticket.comments]
    reopened = [h for h in back.history if h.action == "reopened"]
    assert reopened[0].details["reason"] == f"{NAME} 说仍未收到"


def test_after_the_key_is_shredded_the_ticket_reads_without_its_texts() -> None:
    ticket = worked_ticket()
    document = to_document(ticket, ticket.figures(T0, RULES), FieldCipher("c1", os.urandom(32)))
    back = from_document(document, FieldCipher("c1", None))
    assert back.description == ""
    assert all(c.text == "" for c in back.comments)
    assert [h.details["reason"] for h in back.history if h.action == "reopened"] == [None]
    assert back.priority == document["priority"]
