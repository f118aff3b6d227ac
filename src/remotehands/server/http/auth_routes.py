"""``/v1/auth``: log in (a session token), log out, who am I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select

from remotehands.errors import AuthError, ValidationError
from remotehands.server.auth import (
    SESSION_PREFIX,
    Principal,
    client_ip,
    hash_secret,
    new_secret,
    request_credential,
    require_role,
)
from remotehands.server.db.models import Session, User
from remotehands.server.services import get_services

__all__ = ["router"]

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class LoginIn(BaseModel):
    """Credentials of a user."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(BaseModel):
    """A session token (``rhs_...``) to send as ``Authorization: Bearer``."""

    token: str
    expires_in_s: int


class MeOut(BaseModel):
    """The caller as the server sees it."""

    kind: str
    user_id: str
    username: str
    role: str
    read_only: bool
    tags: list[str] | None
    token_id: str | None


@router.post("/login")
async def login(body: LoginIn, request: Request) -> LoginOut:
    """Exchange a username and password for a session token.

    Failed attempts are limited per client address and username (``login_rate_limit`` per
    minute), per address (``login_address_rate_limit``) and per username
    (``login_username_rate_limit``); past a limit the answer is 429 ``rate_limited`` with
    ``Retry-After``.
    """
    services = get_services(request)
    username = body.username.strip().lower()
    ip = client_ip(request)
    services.login_limiter.check(ip, username, "logins")
    async with services.db.session() as db:
        user = await db.scalar(select(User).where(User.username == username))
    good = await services.passwords.verify(
        user.password_hash if user is not None else None, body.password
    )
    if user is None or not good:
        services.login_limiter.failed(ip, username)
        if user is not None:  # unknown names are not audited: they would let anyone fill it
            await services.audit.record(
                actor=username,
                actor_kind="user",
                action="auth.login",
                result=AuthError.code,
                details=f"wrong password from {ip}",
            )
        raise AuthError("wrong username or password")
    if user.disabled:
        raise AuthError(f"user {username} is disabled; ask an admin")
    services.login_limiter.succeeded(ip, username)
    token = new_secret(SESSION_PREFIX)
    now = services.clock()
    async with services.db.session() as db:
        await db.execute(delete(Session).where(Session.expires_at <= now))
        db.add(
            Session(
                token_hash=hash_secret(token),
                user_id=user.id,
                expires_at=services.authenticator.session_expiry(),
                created_at=now,
            )
        )
        await db.commit()
    await services.audit.record(
        actor=username, actor_kind="user", action="auth.login", details=f"from {ip}"
    )
    return LoginOut(token=token, expires_in_s=services.settings.session_ttl_s)


@router.post("/logout", status_code=204)
async def logout(
    request: Request, principal: Annotated[Principal, require_role("viewer")]
) -> Response:
    """End the session whose token authenticated this request."""
    if principal.kind != "user":
        raise ValidationError(
            "an API token cannot log out; revoke it with DELETE /v1/tokens/{id} instead"
        )
    credential = request_credential(request)
    services = get_services(request)
    async with services.db.session() as db:
        await db.execute(delete(Session).where(Session.token_hash == hash_secret(credential)))
        await db.commit()
    services.principals.clear()
    await services.audit.record(actor=principal.actor, actor_kind="user", action="auth.logout")
    return Response(status_code=204)


@router.get("/me")
async def me(principal: Annotated[Principal, require_role("viewer")]) -> MeOut:
    """Who the token belongs to, with which role and limits."""
    return MeOut(
        kind=principal.kind,
        user_id=principal.user_id,
        username=principal.username,
        role=principal.role,
        read_only=principal.read_only,
        tags=principal.tags,
        token_id=principal.token_id,
    )
