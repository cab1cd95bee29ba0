"""Bearer tokens with roles: agent, supervisor, ops, integration.

Tokens come from the environment (`CRM_API_TOKENS`, or only their SHA-256 hashes in
`CRM_API_TOKEN_HASHES`) and are held in memory only as hashes. No token: 401. Wrong role: 403.
"""

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crm_runtime.settings import ROLES

DEV_TOKEN = "crm-dev-token"
"""The documented token of the local stack (all roles). Never configure it anywhere else."""


@dataclass(frozen=True)
class Principal:
    token_id: str
    """The first 12 hex digits of the token's hash: safe to log and to audit."""
    roles: frozenset[str]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    def __init__(
        self,
        tokens: Mapping[str, Sequence[str]] | None = None,
        hashes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._roles: dict[str, frozenset[str]] = {}
        for token, roles in (tokens or {}).items():
            self._add(token_hash(token), roles)
        for digest, roles in (hashes or {}).items():
            self._add(digest.lower(), roles)

    def _add(self, digest: str, roles: Sequence[str]) -> None:
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; known: {list(ROLES)}")
        self._roles[digest] = frozenset(roles)

    def authenticate(self, token: str) -> Principal | None:
        digest = token_hash(token)
        for known, roles in self._roles.items():
            if hmac.compare_digest(known, digest):
                return Principal(token_id=digest[:12], roles=roles)
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
