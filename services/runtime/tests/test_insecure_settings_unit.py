"""Issue 18: settings fit only for the local stack (its published tokens) refuse to start a
service bound beyond loopback, in one line naming the setting; on loopback they still start (the
local stack, the demo and the tests bind 127.0.0.1)."""

import hashlib
import json
from typing import ClassVar

import pytest
from pydantic_settings import SettingsConfigDict

from crm_runtime.settings import (
    DEV_TOKEN,
    InsecureSettingsError,
    ServiceSettings,
    is_loopback,
    refuse_insecure_off_loopback,
)

pytestmark = pytest.mark.unit
ALL_ROLES = ["agent", "supervisor", "ops", "integration"]


class TicketsLike(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_TICKETS_", extra="ignore")

    service: ClassVar[str] = "tickets"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("crm.example.cn", False),
    ],
)
def test_loopback_is_what_only_this_host_reaches(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_dev_token_refuses_to_start_a_service_bound_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_API_TOKENS", json.dumps({DEV_TOKEN: ALL_ROLES}))
    monkeypatch.setenv("CRM_TICKETS_HTTP_HOST", "0.0.0.0")
    with pytest.raises(InsecureSettingsError) as refused:
        TicketsLike().refuse_insecure_off_loopback()
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        "crm-tickets refuses to start bound to '0.0.0.0' (CRM_TICKETS_HTTP_HOST)"
    )
    assert "CRM_API_TOKENS holds the local stack's published token(s) ['crm-dev-token']" in message
    assert refused.value.code == message  # SystemExit: the one line, status 1, no traceback


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_the_dev_token_on_loopback_starts(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("CRM_API_TOKENS", json.dumps({DEV_TOKEN: ALL_ROLES}))
    monkeypatch.setenv("CRM_TICKETS_HTTP_HOST", host)
    TicketsLike().refuse_insecure_off_loopback()


def test_a_demo_user_s_token_or_its_hash_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hashlib.sha256(b"crm-demo-sup-01").hexdigest().upper()
    monkeypatch.setenv("CRM_API_TOKEN_HASHES", json.dumps({digest: ["supervisor"]}))
    monkeypatch.setenv("CRM_TICKETS_HTTP_HOST", "0.0.0.0")
    with pytest.raises(InsecureSettingsError, match="CRM_API_TOKEN_HASHES holds the hash"):
        TicketsLike().refuse_insecure_off_loopback()


def test_own_tokens_start_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_API_TOKENS", json.dumps({"a-long-secret-of-ours": ALL_ROLES}))
    monkeypatch.setenv("CRM_TICKETS_HTTP_HOST", "0.0.0.0")
    TicketsLike().refuse_insecure_off_loopback()


def test_every_finding_is_named_in_the_one_line() -> None:
    with pytest.raises(InsecureSettingsError) as refused:
        refuse_insecure_off_loopback("notify", "CRM_NOTIFY_HTTP_HOST", "::", ["A is x", "B is y"])
    assert "A is x; B is y" in str(refused.value)
    refuse_insecure_off_loopback("notify", "CRM_NOTIFY_HTTP_HOST", "::", [])
