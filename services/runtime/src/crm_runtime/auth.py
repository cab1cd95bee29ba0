"""Bearer tokens that name a person and their roles: agent, supervisor, ops, integration.

Tokens come from the environment (`CRM_API_TOKENS`, or only their SHA-256 hashes in
`CRM_API_TOKEN_HASHES`) and are held in memory only as hashes. Each token grants either
`{"user": "agent-07", "roles": ["agent"]}` (a person) or, the earlier form, a list of roles (its
user is then the token's id, the first 12 hex digits of its hash). The user id is what audit
records, ticket histories and timelines name. No token: 401. Wrong role: 403. A grant that is not
valid (unknown role, bad user id) stops the service at start.
"""

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crm_runtime.settings import ROLES

TokenGrant = list[str] | dict[str, Any]
"""What one API token grants: `{"user": "<user id>", "roles": [...]}`, or (the earlier form) a
list of roles."""

USER_ID_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"
"""A user id: 1 to 64 letters, digits, `.`, `_`, `@` or `-` (safe in a URL, a log, a query)."""


@dataclass(frozen=True)
class Principal:
    user: str
    """Who acts: the person the token names, or for a token granting only roles its `token_id`."""
    roles: frozenset[str]
    token_id: str
    """The first 12 hex digits of the token's hash: safe to log and to audit."""


@dataclass(frozen=True)
class _Grant:
    user: str | None
    roles: frozenset[str]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_user_id(user: str) -> bool:
    return re.fullmatch(USER_ID_PATTERN, user) is not None


def _grant(token_id: str, grant: TokenGrant) -> _Grant:
    """Check what one token grants; the message names the token by its id, never the token."""
    where = f"API token {token_id}"
    if isinstance(grant, list):
        user, roles = None, grant
    elif not isinstance(grant, dict):
        raise ValueError(f'{where}: expected {{"user": "<user id>", "roles": [...]}} or [roles]')
    else:
        unknown_keys = set(grant) - {"user", "roles"}
        if unknown_keys or "user" not in grant or "roles" not in grant:
            raise ValueError(f'{where}: expected {{"user": "<user id>", "roles": [...]}}')
        user, roles = grant["user"], grant["roles"]
        if not isinstance(user, str) or not is_user_id(user):
            raise ValueError(
                f"{where}: user id {user!r} is not valid: "
                "1 to 64 letters, digits, '.', '_', '@' or '-'"
            )
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise ValueError(f"{where}: roles must be a list of role names")
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"{where}: unknown roles {sorted(unknown)}; known: {list(ROLES)}")
    return _Grant(user, frozenset(roles))


class Authenticator:
    def __init__(
        self,
        tokens: Mapping[str, TokenGrant] | None = None,
        hashes: Mapping[str, TokenGrant] | None = None,
    ) -> None:
        self._grants: dict[str, _Grant] = {}
        for token, grant in (tokens or {}).items():
            digest = token_hash(token)
            self._grants[digest] = _grant(digest[:12], grant)
        for digest, grant in (hashes or {}).items():
            self._grants[digest.lower()] = _grant(digest.lower()[:12], grant)

    def authenticate(self, token: str) -> Principal | None:
        digest = token_hash(token)
        for known, grant in self._grants.items():
            if hmac.compare_digest(known, digest):
                token_id = digest[:12]
                return Principal(user=grant.user or token_id, roles=grant.roles, token_id=token_id)
        return None

    def require(self, *roles: str) -> Callable[..., Principal]:
        """A FastAPI dependency admitting a principal with any of `roles`."""
        wanted = frozenset(roles)
        bearer = HTTPBearer(auto_error=False)

        def dependency(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> Principal:
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "a bearer token is required (Authorization: Bearer <token>)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            principal = self.authenticate(credentials.credentials)
            if principal is None:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "the bearer token is not valid",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if not principal.roles & wanted:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    f"this route needs one of the roles {sorted(wanted)}",
                )
            return principal

        dependency.__doc__ = f"Roles: {', '.join(sorted(wanted))}"
        return dependency
