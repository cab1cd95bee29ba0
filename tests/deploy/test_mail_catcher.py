"""The local stack's mail catcher files every e-mail notify sends into a Maildir a person (or a
mail reader) can open: the message as sent, with the envelope's sender and recipients."""

import mailbox
import smtplib
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from stackutil import free_port, local_stack


def test_each_message_lands_in_the_maildir_as_sent(tmp_path: Path) -> None:
    port = free_port()
    catcher = local_stack.start_mail_catcher(tmp_path, port)
    try:
        local_stack.wait_for(lambda: local_stack.port_open(port), "mail catcher", 30, catcher)
        sent = []
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            for n, subject in enumerate(["您的积分等级已提升", "Welcome, Li Lei"]):
                message = EmailMessage()
                message["From"] = "CRM <crm@example.test>"
                message["To"] = f"c{n}@example.test"
                message["Subject"] = subject
                message.set_content(f"第一行\n.a line that starts with a dot\n{n}\n")
                smtp.send_message(message, to_addrs=[f"c{n}@example.test", "audit@example.test"])
                sent.append(message)
    finally:
        local_stack.stop_pid(catcher.pid)
        catcher.wait(10)

    box = mailbox.Maildir(tmp_path / "mail", create=False)
    filed = sorted(
        (message_from_bytes(box.get_bytes(key), policy=default) for key in box.iterkeys()),
        key=lambda message: str(message["To"]),
    )
    assert len(filed) == 2
    for original, kept in zip(sent, filed, strict=True):
        assert isinstance(kept, EmailMessage)
        assert kept["Subject"] == original["Subject"]
        assert kept["X-MailFrom"] == "crm@example.test"
        assert kept["X-RcptTo"] == f"{original['To']}, audit@example.test"
        assert kept.get_content() == original.get_content()
