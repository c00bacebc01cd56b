"""Bearer tokens: every /v1 route needs one; `admin` may submit and cancel, `read` (dashboards) may only look.

The checks are `async` (run on the event loop, no threadpool hop) and a
valid token's kind is cached for CACHE_S seconds, so a dashboard polling
every second costs one store lookup per token per CACHE_S.
"""

from __future__ import annotations

import hashlib
import time

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False)
CACHE_S = 10.0  # a token's kind is remembered this long, so a poll costs no store lookup


def _kind(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required (Authorization: Bearer TOKEN)", headers={"WWW-Authenticate": "Bearer"})
    digest = hashlib.sha256(credentials.credentials.encode()).hexdigest()
    known = request.app.state.known_tokens  # this app's: sha256 of a valid token -> (kind, until)
    kind, until = known.get(digest, (None, 0.0))
    if until < time.monotonic():
        kind = request.app.state.store.check_token(credentials.credentials)
        if kind is not None:
            known[digest] = (kind, time.monotonic() + CACHE_S)
    if kind is None:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    return kind


async def reader(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
    return _kind(request, credentials)


async def admin(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
    if _kind(request, credentials) != "admin":
        raise HTTPException(403, "this token is read-only; submitting and cancelling need an admin token")
    return "admin"
