"""Server-side sessions: the cookie carries only a random id; the person's token stays here.

A session is made at sign-in (after the token was checked with a service's `GET /me`) and ends
at sign-out, after `idle_s` unused, or when the store is full and it is the least recently used.
Held in memory: one console replica, or sticky sessions in front of several (README).
"""

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Session:
    user: str
    roles: frozenset[str]
    token: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_seen: float = 0.0
    flashes: list[tuple[str, str]] = field(default_factory=list)
    """One-shot messages (kind, text) shown on the next page: `ok` or `error`."""

    def has(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)

    def flash(self, kind: str, text: str) -> None:
        self.flashes.append((kind, text))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


class Sessions:
    def __init__(
        self, idle_s: float, max_sessions: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.idle_s = idle_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._held: OrderedDict[str, Session] = OrderedDict()

    def start(self, user: str, roles: frozenset[str], token: str) -> tuple[str, Session]:
        """A new session (a new id: nothing from before sign-in carries over)."""
        session_id = secrets.token_urlsafe(32)
        session = Session(user, roles, token, last_seen=self.clock())
        self._held[session_id] = session
        while len(self._held) > self.max_sessions:
            self._held.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._held.get(session_id)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle_s:
            del self._held[session_id]
            return None
        session.last_seen = now
        self._held.move_to_end(session_id)
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._held.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._held)
