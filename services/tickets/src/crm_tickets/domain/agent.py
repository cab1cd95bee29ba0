"""Agents and the round-robin that hands them tickets. Pure code."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime


class NoAgentError(LookupError):
    """No agent of that id (HTTP 404, or 422 when a request names it)."""


@dataclass
class Agent:
    agent_id: str
    name: str
    queues: list[str]
    capacity: int
    active: bool = True
    last_assigned_at: datetime | None = None


def next_agent(agents: Sequence[Agent], loads: Mapping[str, int], at: datetime) -> Agent | None:
    """Round-robin: among the active agents with fewer open tickets (`loads`) than their
    capacity, the one assigned longest ago (then the smallest id); None when nobody has room."""
    free = [a for a in agents if a.active and loads.get(a.agent_id, 0) < a.capacity]
    if not free:
        return None
    oldest = datetime.min.replace(tzinfo=at.tzinfo)
    return min(free, key=lambda a: (a.last_assigned_at or oldest, a.agent_id))
