"""`GET /me`, which every service mounts: who the caller's token names, so the console can tell
a person's user id and roles at sign-in without a copy of the token list."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from crm_runtime.auth import Authenticator
from crm_runtime.http import me_router

pytestmark = pytest.mark.unit


def client() -> TestClient:
    auth = Authenticator(
        {
            "agent-token": {"user": "agent-07", "roles": ["agent"]},
            "sup-token": {"user": "sup-01", "roles": ["supervisor", "ops"]},
            "roles-only": ["integration"],
        }
    )
    app = FastAPI()
    app.include_router(me_router(auth))
    return TestClient(app)


def test_me_names_the_person_and_roles_of_the_token() -> None:
    me = client().get("/me", headers={"Authorization": "Bearer sup-token"})
    assert me.status_code == 200
    assert me.json() == {"user": "sup-01", "roles": ["ops", "supervisor"]}
    agent = client().get("/me", headers={"Authorization": "Bearer agent-token"})
    assert agent.json() == {"user": "agent-07", "roles": ["agent"]}


def test_me_of_a_roles_only_token_is_its_token_id() -> None:
    me = client().get("/me", headers={"Authorization": "Bearer roles-only"}).json()
    assert me["roles"] == ["integration"]
    assert len(me["user"]) == 12
    assert "roles-only" not in me["user"]


def test_me_without_a_valid_token_is_401() -> None:
    assert client().get("/me").status_code == 401
    assert client().get("/me", headers={"Authorization": "Bearer nope"}).status_code == 401
