"""Tokens name a person: who a token signs in as, in both forms of `CRM_API_TOKENS` and of
`CRM_API_TOKEN_HASHES`, and the grants refused at start (before any request is served)."""

import hashlib
import json

import pytest

from crm_runtime.auth import Authenticator, Principal, token_hash
from crm_runtime.settings import ServiceSettings

pytestmark = pytest.mark.unit


def test_a_token_naming_a_person_signs_in_as_that_person() -> None:
    auth = Authenticator({"t-07": {"user": "agent-07", "roles": ["agent"]}})
    assert auth.authenticate("t-07") == Principal(
        user="agent-07", roles=frozenset({"agent"}), token_id=token_hash("t-07")[:12]
    )
    assert auth.authenticate("someone-else") is None


def test_a_token_granting_only_roles_keeps_working_its_user_being_its_token_id() -> None:
    principal = Authenticator({"old": ["agent", "ops"]}).authenticate("old")
    assert principal is not None
    assert principal.user == principal.token_id == hashlib.sha256(b"old").hexdigest()[:12]
    assert principal.roles == {"agent", "ops"}


def test_hashed_tokens_name_a_person_too_and_keep_no_secret() -> None:
    digest = hashlib.sha256(b"sup-token").hexdigest()
    auth = Authenticator(
        hashes={
            digest.upper(): {"user": "sup-01", "roles": ["supervisor"]},
            token_hash("legacy"): ["ops"],
        }
    )
    supervisor = auth.authenticate("sup-token")
    assert supervisor is not None
    assert supervisor.user == "sup-01"
    assert supervisor.token_id == digest[:12]
    legacy = auth.authenticate("legacy")
    assert legacy is not None
    assert legacy.user == token_hash("legacy")[:12]


def test_the_environment_carries_both_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = {"t-07": {"user": "agent-07", "roles": ["agent"]}, "old": ["ops"]}
    monkeypatch.setenv("CRM_API_TOKENS", json.dumps(tokens))
    monkeypatch.setenv(
        "CRM_API_TOKEN_HASHES",
        json.dumps({token_hash("t-01"): {"user": "owner-01@example.cn", "roles": ["agent"]}}),
    )
    settings = ServiceSettings()
    auth = Authenticator(settings.api_tokens, settings.api_token_hashes)
    assert [p.user if (p := auth.authenticate(t)) else None for t in ("t-07", "t-01")] == [
        "agent-07",
        "owner-01@example.cn",
    ]


@pytest.mark.parametrize(
    "user", ["", "x" * 65, "li lei", "李雷", "a/b", "a:b", "<script>", 7, None]
)
def test_a_bad_user_id_is_refused_at_start_with_a_clear_message(user: object) -> None:
    with pytest.raises(ValueError, match=r"user id .* is not valid: 1 to 64 letters") as refused:
        Authenticator({"secret-token": {"user": user, "roles": ["agent"]}})
    assert "secret-token" not in str(refused.value)  # the token is named by its id only
    assert token_hash("secret-token")[:12] in str(refused.value)
    with pytest.raises(ValueError, match="is not valid"):
        Authenticator(hashes={token_hash("t"): {"user": user, "roles": ["agent"]}})


@pytest.mark.parametrize("user", ["a", "agent-07", "li.lei_2@example.cn", "x" * 64])
def test_user_ids_of_letters_digits_and_dot_underscore_at_dash_are_accepted(user: str) -> None:
    principal = Authenticator({"t": {"user": user, "roles": ["agent"]}}).authenticate("t")
    assert principal is not None
    assert principal.user == user


@pytest.mark.parametrize(
    "grant",
    [
        {"roles": ["agent"]},
        {"user": "agent-07"},
        {"user": "agent-07", "roles": ["agent"], "role": "ops"},
        {"user": "agent-07", "roles": "agent"},
        "agent",
    ],
)
def test_a_malformed_grant_is_refused_at_start_without_naming_the_token(
    grant: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_API_TOKENS", json.dumps({"secret-token": grant}))
    settings = ServiceSettings()
    with pytest.raises(ValueError, match="API token") as refused:
        Authenticator(settings.api_tokens)
    assert "secret-token" not in str(refused.value)
