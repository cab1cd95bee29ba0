"""The local stack's mail catcher: an SMTP server that files every message it receives into a
Maildir, as it came, for a person to read what notify sent.

    python deploy/local/mail_catcher.py --listen 127.0.0.1:2525 .local/mail

aiosmtpd's own `Mailbox` handler parsed each message, wrote it out again and synced the file to
disk: about 1.1 ms of CPU per e-mail, on the two cores the suite shares (`docs/performance.md`,
"The store keeps its memory; the mail catcher writes what it gets"). This one writes the bytes it
received behind the envelope's three headers, as `Mailbox` did (`X-Peer`, `X-MailFrom`,
`X-RcptTo`), without a parse and without a sync (about 0.6 ms): it is a window on a development
stack, not a mail store.
"""

import argparse
import asyncio
import itertools
import os
import socket
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirWriter:
    """An aiosmtpd handler filing each message into `root` (tmp/, then renamed into new/)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for part in ("tmp", "new", "cur"):
            (root / part).mkdir(parents=True, exist_ok=True)
        self.serial = itertools.count(1)
        self.host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        envelope_headers = (
            f"X-Peer: {session.peer}\n"
            f"X-MailFrom: {envelope.mail_from}\n"
            f"X-RcptTo: {', '.join(envelope.rcpt_tos)}\n"
        ).encode()
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self.serial)}.{self.host}"
        staged = self.root / "tmp" / name
        staged.write_bytes(envelope_headers + content.replace(b"\r\n", b"\n"))
        staged.rename(self.root / "new" / name)
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, root: Path) -> None:
    handler = MaildirWriter(root)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), host=host, port=port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:2525", help="host:port")
    parser.add_argument("maildir", type=Path)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    asyncio.run(serve(host, int(port), args.maildir))


if __name__ == "__main__":
    main()
