"""How the archive's records are stored: the customer document, the facts it keeps apart
(`facts_apart`), the timeline entries and the notes (their free texts sealed). Figures are the
domain's (`Customer.figures`): stored, not computed here."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from pymongo import UpdateOne

from crm_archive.adapters.pii import lookup_keys, profile_from_document, profile_to_document
from crm_archive.domain.apart import Earlier
from crm_archive.domain.customer import Customer
from crm_archive.domain.facts import Agreement, Order, Survey
from crm_archive.domain.value import Figures
from crm_archive.ports import CustomerRow, Note, OrderLines, TimelineEntry
from crm_runtime.crypto import FieldCipher, KeyRing
from crm_runtime.documents import dataclass_document, dataclass_from
from crm_runtime.mongo import Document, from_decimal128, to_decimal128


def _money(value: Decimal) -> Decimal128:
    return to_decimal128(value)


def _decimal(value: Any) -> Decimal:
    return from_decimal128(value)


def order_document(o: Order) -> Document:
    return {
        "id": o.order_id,
        "at": o.placed_at,
        "amount": _money(o.amount),
        "currency": o.currency,
        "refunded": _money(o.refunded),
        "cancelled": o.cancelled,
    }


def order_from(o: Document) -> Order:
    return Order(
        o["id"],
        o["at"],
        _decimal(o["amount"]),
        o["currency"],
        _decimal(o["refunded"]),
        o["cancelled"],
    )


def _earlier(e: Earlier) -> Document:
    return {
        "orders": e.orders,
        "base_orders": e.base_orders,
        "base_net": _money(e.base_net),
        "foreign": {
            c: {"orders": e.foreign_orders[c], "net": _money(n)} for c, n in e.foreign.items()
        },
        "first_order_at": e.first_order_at,
        "complaints": e.complaints,
        "surveys": e.surveys,
        "nps_answers": e.nps_answers,
        "promoters": e.promoters,
        "detractors": e.detractors,
        "csat_answers": e.csat_answers,
        "csat_total": e.csat_total,
        "stored": e.stored,
    }


def _earlier_from(doc: Document | None) -> Earlier:
    if not doc:
        return Earlier()
    foreign = doc.get("foreign", {})
    return dataclass_from(
        Earlier,
        doc,
        None,
        base_net=_decimal(doc["base_net"]),
        foreign={c: _decimal(f["net"]) for c, f in foreign.items()},
        foreign_orders={c: f["orders"] for c, f in foreign.items()},
    )


LINES = "order_lines"
"""The collection of the orders' lines (one document per order) product preferences rank."""


def line_updates(lines: list[OrderLines], cancelled: list[tuple[str, str]]) -> list[UpdateOne]:
    """The writes to `order_lines`: an order's lines as first announced, then its cancellation
    (a cancellation seen before the order keeps it out for good, as in the record)."""
    updates: list[UpdateOne] = []
    for line in lines:
        document = {
            "customer_id": line.customer_id,
            "at": line.at,
            "currency": line.currency,
            "items": [{"sku": i.sku, "category": i.category, "cents": i.cents} for i in line.items],
        }
        updates.append(
            UpdateOne(
                {"_id": apart_id(line.customer_id, "order", line.order_id)},
                {"$setOnInsert": document},
                upsert=True,
            )
        )
    for customer_id, order_id in cancelled:
        updates.append(
            UpdateOne(
                {"_id": apart_id(customer_id, "order", order_id)},
                {"$set": {"customer_id": customer_id, "cancelled": True}},
                upsert=True,
            )
        )
    return updates


APART = "facts_apart"
"""The collection of the facts a record keeps apart: one document per order, complaint, survey."""


def apart_id(customer_id: str, kind: str, fact_id: str) -> str:
    """Ids hold no white space (crm_contracts Identifier): the space keeps the parts apart."""
    return f"{customer_id} {kind} {fact_id}"


def apart_documents(customer: Customer) -> tuple[list[Document], list[str]]:
    """What to write to `facts_apart` for a record: documents to put, ids to delete."""
    put: list[Document] = []
    for order_id, order in customer.apart.orders.items():
        put.append(
            {
                "_id": apart_id(customer.id, "order", order_id),
                "customer_id": customer.id,
                "kind": "order",
                "fact_id": order_id,
                "at": order.placed_at,
                "active": order.active,
                "order": order_document(order),
            }
        )
    for complaint_id, at in customer.apart.complaints.items():
        put.append(
            {
                "_id": apart_id(customer.id, "complaint", complaint_id),
                "customer_id": customer.id,
                "kind": "complaint",
                "fact_id": complaint_id,
                "at": at,
            }
        )
    for survey_id, survey in customer.apart.surveys.items():
        put.append(
            {
                "_id": apart_id(customer.id, "survey", survey_id),
                "customer_id": customer.id,
                "kind": "survey",
                "fact_id": survey_id,
                "at": survey.at,
                "csat": survey.csat,
                "nps": survey.nps,
            }
        )
    gone = [apart_id(customer.id, kind, fact_id) for kind, fact_id in customer.apart.back]
    return put, gone


def to_document(customer: Customer, cipher: FieldCipher, ring: KeyRing) -> Document:
    """The record as stored; what it holds in full is sorted, so the document depends on the
    facts only (not on the batches that brought them)."""
    held = sorted(customer.orders.values(), key=order_key)
    figures = customer.figures
    return {
        "_id": customer.id,
        "first_seen_at": customer.first_seen_at,
        "last_event_at": customer.last_event_at,
        "registered_at": customer.registered_at,
        "pii": profile_to_document(customer.profile, cipher),
        "lookup": lookup_keys(customer.profile, ring) if not cipher.shredded else {},
        "tags": customer.tags,
        "consents": customer.consents,
        "account_owner": customer.account_owner,
        "erased_at": customer.erased_at,
        "erasure": {
            "request_id": customer.erasure_request_id,
            "confirmations": customer.erasure_confirmations,
        },
        "orders": [order_document(o) for o in held],
        "complaints": [
            {"id": k, "at": v} for k, v in sorted(customer.complaints.items(), key=_by_time)
        ],
        "surveys": [
            {"id": k, "at": s.at, "csat": s.csat, "nps": s.nps}
            for k, s in sorted(customer.surveys.items(), key=lambda i: (i[1].at, i[0]))
        ],
        "earlier": _earlier(customer.earlier),
        "contacts": customer.contacts,
        "open_tickets": customer.open_tickets,
        "tickets_resolved": customer.tickets_resolved,
        "loyalty_tier": customer.loyalty_tier,
        "agreements": [
            {
                "id": k,
                "number": a.number,
                "starts_on": a.starts_on.isoformat(),
                "ends_on": a.ends_on.isoformat(),
            }
            for k, a in sorted(customer.agreements.items())
        ],
        "agreement_numbers": customer.agreement_numbers,
        "agreement_customer": bool(customer.agreement_numbers),
        "stage": customer.stage,
        "grade": customer.grade,
        "churn_reasons": customer.churn_reasons,
        "churn_risk_since": customer.churn_risk_since,
        "at_risk": bool(customer.churn_reasons),
        "next_review_at": customer.next_review_at,
        # Figures that do not depend on the clock (`Customer.figures`), for lists and reports.
        "order_count": figures.order_count,
        "net_spent": _money(figures.net_spent),
        "first_order_at": figures.first_order_at,
        "last_order_at": figures.last_order_at,
        "rfm": customer.rfm_total,
        "version": customer.version,
    }


def from_document(doc: Document, cipher: FieldCipher) -> Customer:
    return Customer(
        id=doc["_id"],
        first_seen_at=doc["first_seen_at"],
        last_event_at=doc["last_event_at"],
        registered_at=doc.get("registered_at"),
        profile=profile_from_document(doc.get("pii"), cipher),
        tags=list(doc.get("tags", [])),
        consents=doc.get("consents", {}),
        account_owner=doc.get("account_owner"),
        erased_at=doc.get("erased_at"),
        erasure_request_id=doc.get("erasure", {}).get("request_id"),
        erasure_confirmations=dict(doc.get("erasure", {}).get("confirmations", {})),
        orders={o["id"]: order_from(o) for o in doc.get("orders", [])},
        complaints={c["id"]: c["at"] for c in doc.get("complaints", [])},
        surveys={s["id"]: Survey(s["at"], s["csat"], s["nps"]) for s in doc.get("surveys", [])},
        contacts=doc.get("contacts", 0),
        open_tickets=list(doc.get("open_tickets", [])),
        tickets_resolved=doc.get("tickets_resolved", 0),
        loyalty_tier=doc.get("loyalty_tier"),
        agreements={
            a["id"]: Agreement(
                a["number"], date.fromisoformat(a["starts_on"]), date.fromisoformat(a["ends_on"])
            )
            for a in doc.get("agreements", [])
        },
        agreement_numbers=list(doc.get("agreement_numbers", [])),
        earlier=_earlier_from(doc.get("earlier")),
        stage=doc.get("stage"),
        grade=doc.get("grade"),
        churn_reasons=list(doc.get("churn_reasons", [])),
        churn_risk_since=doc.get("churn_risk_since"),
        next_review_at=doc.get("next_review_at"),
        figures=Figures(
            doc.get("order_count", 0),
            _decimal(doc.get("net_spent", 0)),
            doc.get("first_order_at"),
            doc.get("last_order_at"),
        ),
        rfm_total=doc.get("rfm"),
        version=doc["version"],
    )


def order_key(order: Order) -> tuple[bool, datetime | None, str]:
    return order.placed_at is not None, order.placed_at, order.order_id


def _by_time(item: tuple[str, datetime]) -> tuple[datetime, str]:
    return item[1], item[0]


def timeline_document(entry: TimelineEntry, cipher: FieldCipher) -> Document:
    """A contact's summary and a creation's request are sealed under the customer's data key
    (None when erased)."""
    summary = cipher.seal(f"{entry.event_id}/summary", entry.summary)
    topic = cipher.seal(f"{entry.event_id}/topic", entry.topic)
    request = cipher.seal(f"{entry.event_id}/request", entry.request)
    return dataclass_document(entry, "event_id", summary=summary, topic=topic, request=request)


def timeline_entry(doc: Document, cipher: FieldCipher) -> TimelineEntry:
    summary = cipher.open(f"{doc['_id']}/summary", doc.get("summary"))
    topic = cipher.open(f"{doc['_id']}/topic", doc.get("topic"))
    request = cipher.open(f"{doc['_id']}/request", doc.get("request"))
    return dataclass_from(
        TimelineEntry, doc, "event_id", summary=summary, topic=topic, request=request
    )


def note_document(note: Note, cipher: FieldCipher) -> Document:
    """The text is sealed under the customer's data key (None when erased)."""
    return dataclass_document(note, "note_id", text=cipher.seal(f"{note.note_id}/text", note.text))


def note_from(doc: Document, cipher: FieldCipher) -> Note:
    text = cipher.open(f"{doc['_id']}/text", doc.get("text"))
    return dataclass_from(Note, doc, "note_id", text=text)


def customer_row(doc: Document) -> CustomerRow:
    return CustomerRow(
        id=doc["_id"],
        grade=doc.get("grade"),
        stage=doc.get("stage"),
        at_risk=doc.get("at_risk", False),
        account_owner=doc.get("account_owner"),
        order_count=doc.get("order_count", 0),
        net_spent=_decimal(doc["net_spent"]),
        last_order_at=doc.get("last_order_at"),
        rfm=doc.get("rfm"),
    )
