"""ADR 0028: what a batch decides is sent right after its commit where sweeps run (as before),
not where they do not (tests that send on demand), unless `SEND_NOW_ENABLED` says so: the local
stack's bulk replica sweeps nothing and still sends what it decides."""

import pytest

from crm_notify.settings import NotifySettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("sweeps", "send_now", "sends"),
    [
        ("true", None, True),
        ("false", None, False),
        ("false", "true", True),
        ("true", "false", False),
    ],
)
def test_sending_right_after_the_commit_follows_the_sweeps_unless_told(
    monkeypatch: pytest.MonkeyPatch, sweeps: str, send_now: str | None, sends: bool
) -> None:
    monkeypatch.setenv("CRM_NOTIFY_SWEEPS_ENABLED", sweeps)
    if send_now is not None:
        monkeypatch.setenv("CRM_NOTIFY_SEND_NOW_ENABLED", send_now)
    assert NotifySettings().sends_now() is sends
