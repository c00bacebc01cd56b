"""Bearer tokens: every /v1 route needs one; `admin` may submit and cancel, `read` (dashboards) may only look."""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False)


def _kind(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required (Authorization: Bearer TOKEN)", headers={"WWW-Authenticate": "Bearer"})
    kind = request.app.state.store.check_token(credentials.credentials)
    if kind is None:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    return kind


def reader(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
    return _kind(request, credentials)


def admin(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
    if _kind(request, credentials) != "admin":
        raise HTTPException(403, "this token is read-only; submitting and cancelling need an admin token")
    return "admin"
