"""CPU per e-mail of writing it, the two ways notify has: the standard library's `EmailMessage`
with the header parsing and refolding aiosmtplib's `send_message` adds (the envelope's addresses
read back from the headers, the message flattened), and `email_bytes`, which writes the same
e-mail directly (notify since 2026-12-04, for a plain ASCII address). No stack; the best of 7
repeats, so the figures hold on a busy machine.

    python benchmarks/email_writing.py

To compare two commits side by side, run it with each one's sources first on `PYTHONPATH`.
"""

import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiosmtplib.email import extract_recipients, extract_sender, flatten_message

from crm_notify.adapters.channels import author, email_bytes, email_message
from crm_notify.domain.notification import Notification

SENDER = "客户服务 <care@example.com>"


def best_us(call: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=7)) / number * 1e6


def tier_email() -> Notification:
    """A tier change's e-mail, the commonest in the shop replay."""
    note = Notification(
        "N-5f0c6ad1c3f94e1b8e0b2f2d8c4a7b19",
        "c1",
        "tier_changed",
        "transactional",
        "e1",
        datetime.now(UTC),
    )
    note.to = "li.lei@example.com"
    note.subject = "会员等级变更：您已升级为金卡会员"
    note.body = "尊敬的李雷：\n\n您的会员等级已由银卡升级为金卡，感谢您的支持。\n\n——客户关怀团队\n"
    return note


def main() -> None:
    note = tier_email()
    sender = author(SENDER)
    assert sender is not None

    def standard_library() -> bytes:
        message = email_message(note, SENDER)
        extract_sender(message)
        extract_recipients(message)
        return flatten_message(message, utf8=False, cte_type="8bit")

    def written() -> bytes:
        return email_bytes(note, "li.lei@example.com", sender)

    rows = [
        ("EmailMessage, as aiosmtplib's send_message sends it", best_us(standard_library, 200)),
        ("email_bytes", best_us(written, 2000)),
    ]
    print(f"{'how':55s} {'CPU µs per e-mail':>18s}")
    for name, us in rows:
        print(f"{name:55s} {us:18,.1f}")


if __name__ == "__main__":
    main()
