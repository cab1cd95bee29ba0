"""Hostile names against notify, with a real SMTP server (aiosmtpd): `members.v1` allows a line
break in a name, and the welcome's Subject header is built from it.

What this protects: one customer's name must never stop e-mail for everyone. Every customer with
a hostile name (LF, CRLF with a header injection attempt, U+2028, U+2029, NUL/ESC, 200
characters) gets their welcome with a clean one-line subject and nothing smuggled into the
headers — or, at worst, that one message fails alone with a reason; and a customer registered
after them gets theirs. Before the fix the Subject raised `ValueError` inside the delivery sweep,
which stopped at that message on every run: nothing was ever sent again.
"""

import unicodedata
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from stackutil import ServiceProcess, SmtpServer, Stack, cloud_event, eventually, send, unique

pytestmark = [pytest.mark.hostile, pytest.mark.slow]

HOSTILE_NAMES = {
    "lf": "Li\nLei",
    "crlf-injection": "Li\r\nBcc: victim@example.com",
    "u2028": "Li\u2028Lei",
    "u2029": "Li\u2029Lei",
    "controls": "Li\x00\x1b[31m\x7f\x85Lei",
    "long": "长" * 199 + "\n",
}
LINE_BREAKS = "\r\n\u2028\u2029\x85\x0b\x0c"
HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}
"""Every header notify writes: nothing smuggled in (no Bcc) through a name."""


@pytest.fixture(scope="module")
def notify(stack: Stack, smtp: SmtpServer) -> Iterator[ServiceProcess]:
    service = ServiceProcess.isolated(
        "notify",
        stack,
        smtp_host="127.0.0.1",
        smtp_port=str(smtp.port),
        deliver_interval_s="0.3",
        retry_initial_s="0.5",  # the runtime back-off, and the delivery retry:
        rules__retry_initial_s="0.5",
        retry_max_s="1",
        rules__retry_max_s="1",
    ).start()
    yield service
    service.stop()


def register(stack: Stack, customer: str, name: str) -> None:
    data = {"name": name, "email": f"{customer}@example.com"}
    send(stack, "members.v1", (customer, cloud_event("customer.registered", customer, data)))


def welcome(notify: ServiceProcess, customer: str) -> dict[str, Any] | None:
    items = notify.get("/notifications", customer_id=customer, template="welcome").json()["items"]
    return notify.get(f"/notifications/{items[0]['id']}").json() if items else None


def statuses(notify: ServiceProcess, customers: dict[str, str]) -> dict[str, Any]:
    """What notify says about each customer's welcome (for failure messages)."""
    found = {case: welcome(notify, customer) for case, customer in customers.items()}
    return {
        case: (n["status"], n["history"][-1]["reason"]) if n else None for case, n in found.items()
    }


def test_a_hostile_name_neither_breaks_its_subject_nor_stops_anyone_elses_email(
    stack: Stack, notify: ServiceProcess, smtp: SmtpServer
) -> None:
    hostile = {case: unique(f"hn-{case}") for case in HOSTILE_NAMES}
    for case, customer in hostile.items():
        register(stack, customer, HOSTILE_NAMES[case])
    # Their welcomes exist (and are due) before the next customer registers.
    eventually(lambda: all(welcome(notify, c) for c in hostile.values()), timeout=30)
    later = unique("hn-after")
    register(stack, later, "李雷")

    def later_delivered() -> bool:
        assert smtp.mailbox.to(f"{later}@example.com"), (
            "the welcome of a customer registered after the hostile names was not delivered; "
            f"notify says: {statuses(notify, {**hostile, 'after': later})}"
        )
        return True

    eventually(later_delivered, timeout=30)
    [mail] = smtp.mailbox.to(f"{later}@example.com")
    assert mail["Subject"] == "欢迎加入，李雷"

    def finished(customer: str) -> dict[str, Any]:
        n = welcome(notify, customer)
        assert n is not None
        assert n["status"] in ("sent", "failed"), n
        return n

    for case, customer in hostile.items():
        n = eventually(partial(finished, customer), timeout=30)
        mails = smtp.mailbox.to(f"{customer}@example.com")
        if n["status"] == "failed":  # allowed: it failed alone, and says why
            assert n["history"][-1]["reason"], case
            assert mails == [], case
            continue
        assert len(mails) == 1, (case, len(mails))
        subject = str(mails[0]["Subject"])
        assert not any(ch in subject for ch in LINE_BREAKS), (case, subject)
        assert not any(unicodedata.category(ch) == "Cc" for ch in subject), (case, subject)
        assert subject.startswith("欢迎加入，Li") or subject.startswith("欢迎加入，长"), subject
        assert len(subject) <= 200, (case, len(subject))
        headers = {h.lower() for h in mails[0]}
        assert headers <= HEADERS, (case, headers)
        assert mails[0]["To"] == f"{customer}@example.com", case
        assert mails[0].get_content().strip(), case
    sent = {case: smtp.mailbox.to(f"{c}@example.com") for case, c in hostile.items()}
    for case in ("lf", "u2028", "u2029"):
        assert [m["Subject"] for m in sent[case]] == ["欢迎加入，Li Lei"], case
    assert [m["Subject"] for m in sent["controls"]] == ["欢迎加入，Li[31m Lei"]
    assert smtp.mailbox.to("victim@example.com") == []
