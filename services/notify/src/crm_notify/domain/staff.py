"""The staff address book: where messages for the suite's own people go (owners' task digests,
escalations to supervisors, agreement alerts). Configuration (`CRM_NOTIFY_STAFF`), keyed by the
user ids the tokens name (ADR 0010). Pure code.

Staff messages are the staff's work, not marketing: they pass no customer consent, opt-out or
quiet hours; they keep the claim before the send, the retries and the idempotency of every
message. A person without an e-mail address here gets nothing: the message is recorded
`suppressed` with the reason (`staff:no_address`), never an error that stops a batch.
"""

from dataclasses import dataclass
from typing import Literal

from crm_notify.domain.templates import one_line

StaffLocale = Literal["zh-CN", "en"]
SUPERVISOR = "supervisor"
NO_STAFF_ADDRESS = "staff:no_address"
"""Why a message for a person of ours is not sent: no e-mail address in `CRM_NOTIFY_STAFF`."""


@dataclass(frozen=True)
class StaffMember:
    """One person: `CRM_NOTIFY_STAFF='{"li.wei": {"email": "li.wei@example.cn", "locale":
    "zh-CN", "roles": ["supervisor"]}}'`."""

    email: str | None = None
    locale: StaffLocale = "zh-CN"
    roles: tuple[str, ...] = ()
    name: str | None = None

    def __post_init__(self) -> None:
        if self.email is not None:
            local, at, domain = self.email.partition("@")
            if not (local and at and "." in domain) or one_line(self.email, 254) != self.email:
                raise ValueError(f"{self.email!r} is not an e-mail address (name@domain)")
            if " " in self.email:
                raise ValueError(f"{self.email!r} is not an e-mail address (a space in it)")
        if self.name is not None and one_line(self.name, 100) != self.name:
            raise ValueError("a staff name is one line of at most 100 characters")

    @property
    def is_supervisor(self) -> bool:
        return SUPERVISOR in self.roles


def supervisors(directory: dict[str, StaffMember]) -> list[str]:
    """The user ids of the supervisors, in a stable order."""
    return sorted(user for user, member in directory.items() if member.is_supervisor)
