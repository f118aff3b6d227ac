"""``/v1/auth``: log in (a session token, with a TOTP code for users who enabled one), log out,
who am I, and two-factor sign-in: enroll, confirm, disable.

Browsers sign in with ``POST /v1/auth/web/signin`` (the same body, the same rate limits and
second factor as ``/v1/auth/login``), which answers the session in cookies instead of the body
(:mod:`remotehands.server.auth.browser`); ``POST /v1/auth/logout`` ends the session of either
kind and clears the cookies."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select, update

from remotehands.errors import AuthError, ValidationError
from remotehands.server.auth import (
    SESSION_PREFIX,
    Principal,
    client_ip,
    credential_from_cookie,
    hash_secret,
    new_secret,
    request_credential,
    require_role,
    totp,
)
from remotehands.server.auth.browser import (
    clear_session_cookies,
    is_https,
    set_session_cookies,
)
from remotehands.server.db.models import Session, User
from remotehands.server.services import Services, get_services

__all__ = ["router"]

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class LoginIn(BaseModel):
    """Credentials of a user."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(None, max_length=64)
    """The code of the user's authenticator app, or one of their recovery codes."""


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


class SignInOut(BaseModel):
    """A browser's session, set in its cookies: who signed in, and for how long."""

    username: str
    role: str
    expires_in_s: int


@router.post("/login")
async def login(body: LoginIn, request: Request) -> LoginOut:
    """Exchange a username and password for a session token.

    Failed attempts are limited per client address and username (``login_rate_limit`` per
    minute), per address (``login_address_rate_limit``) and per username
    (``login_username_rate_limit``); past a limit the answer is 429 ``rate_limited`` with
    ``Retry-After``.
    """
    token, _ = await _sign_in(body, request)
    return LoginOut(token=token, expires_in_s=get_services(request).settings.session_ttl_s)


@router.post("/web/signin")
async def web_signin(body: LoginIn, request: Request, response: Response) -> SignInOut:
    """Sign a browser in: as ``POST /v1/auth/login`` (same rate limits, same second factor),
    but the session goes into the ``rh_session`` cookie (HttpOnly, SameSite=Strict, Secure over
    HTTPS) with its CSRF value in ``rh_csrf``, to send back as the ``X-CSRF-Token`` header on
    every request that changes something."""
    token, user = await _sign_in(body, request)
    ttl = get_services(request).settings.session_ttl_s
    set_session_cookies(response, token, max_age_s=ttl, secure=is_https(request))
    return SignInOut(username=user.username, role=user.role, expires_in_s=ttl)


async def _sign_in(body: LoginIn, request: Request) -> tuple[str, User]:
    """Check the credentials (rate-limited, audited) and open a session: its token and user."""
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
    if user.totp_enabled:
        await _second_factor(services, user, body.totp, ip)
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
    return token, user


@router.post("/logout", status_code=204)
async def logout(
    request: Request, principal: Annotated[Principal, require_role("viewer")]
) -> Response:
    """End the session whose token (or browser cookie) authenticated this request; a
    browser's cookies are cleared."""
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
    response = Response(status_code=204)
    if credential_from_cookie(request):
        clear_session_cookies(response, secure=is_https(request))
    return response


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


async def _second_factor(services: Services, user: User, code: str | None, ip: str) -> None:
    """Check the TOTP (or recovery) code of a user who has two-factor sign-in; a wrong one
    counts as a failed login and is audited."""
    if not code:
        raise AuthError(
            "this user signs in with a second factor: send the authenticator app's code as "
            '"totp" (or a recovery code)'
        )
    if user.totp_secret and totp.verify_code(user.totp_secret, code, services.clock()):
        return
    remaining = totp.use_recovery(user.totp_recovery, code)
    if remaining is not None:
        async with services.db.session() as db:
            await db.execute(update(User).where(User.id == user.id)
                             .values(totp_recovery=remaining))  # fmt: skip
            await db.commit()
        await services.audit.record(actor=user.username, actor_kind="user",
                                    action="auth.totp.recovery",
                                    details=f"recovery code used from {ip}; "
                                    f"{len(remaining)} left")  # fmt: skip
        return
    services.login_limiter.failed(ip, user.username)
    await services.audit.record(actor=user.username, actor_kind="user", action="auth.login",
                                result=AuthError.code,
                                details=f"wrong TOTP code from {ip}")  # fmt: skip
    raise AuthError("wrong username, password or code")


class TotpEnrollOut(BaseModel):
    """A new TOTP secret: add it to an authenticator app (the URI as a QR code), then confirm."""

    secret: str
    otpauth_uri: str


class TotpCodeIn(BaseModel):
    """A code of the authenticator app (or, to disable, a recovery code)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=6, max_length=64)


class TotpConfirmOut(BaseModel):
    """Recovery codes, each good for one login without the app: shown this once only."""

    recovery_codes: list[str]


async def _own_user(services: Services, principal: Principal) -> User:
    if principal.kind != "user":
        raise ValidationError("two-factor sign-in belongs to a user: log in with a session")
    async with services.db.session() as db:
        user = await db.get(User, principal.user_id)
    if user is None:
        raise AuthError("your user no longer exists")
    return user


@router.post("/totp/enroll")
async def totp_enroll(
    request: Request, principal: Annotated[Principal, require_role("viewer")]
) -> TotpEnrollOut:
    """Start two-factor sign-in: a new secret, in force once a code confirms it."""
    services = get_services(request)
    user = await _own_user(services, principal)
    if user.totp_enabled:
        raise ValidationError("two-factor sign-in is on already: disable it first to start over")
    secret = totp.new_secret()
    async with services.db.session() as db:
        await db.execute(update(User).where(User.id == user.id).values(totp_secret=secret))
        await db.commit()
    await services.audit.record_for(principal, "auth.totp.enroll")
    return TotpEnrollOut(secret=secret, otpauth_uri=totp.otpauth_uri(secret, user.username))


@router.post("/totp/confirm")
async def totp_confirm(
    body: TotpCodeIn, request: Request, principal: Annotated[Principal, require_role("viewer")]
) -> TotpConfirmOut:
    """Turn two-factor sign-in on with a code of the enrolled secret; answers recovery codes."""
    services = get_services(request)
    user = await _own_user(services, principal)
    if user.totp_secret is None or user.totp_enabled:
        raise ValidationError("nothing to confirm: start with POST /v1/auth/totp/enroll")
    ip = client_ip(request)
    services.login_limiter.check(ip, user.username, "codes")
    if not totp.verify_code(user.totp_secret, body.code, services.clock()):
        services.login_limiter.failed(ip, user.username)
        raise AuthError("wrong code: give the code the authenticator app shows now")
    codes, hashes = totp.new_recovery_codes()
    async with services.db.session() as db:
        await db.execute(update(User).where(User.id == user.id)
                         .values(totp_enabled=True, totp_recovery=hashes))  # fmt: skip
        await db.commit()
    services.principals.clear()
    await services.audit.record_for(principal, "auth.totp.enable")
    return TotpConfirmOut(recovery_codes=codes)


@router.post("/totp/disable", status_code=204)
async def totp_disable(
    body: TotpCodeIn, request: Request, principal: Annotated[Principal, require_role("viewer")]
) -> Response:
    """Turn two-factor sign-in off, with a current code or a recovery code."""
    services = get_services(request)
    user = await _own_user(services, principal)
    if not user.totp_enabled or user.totp_secret is None:
        raise ValidationError("two-factor sign-in is off already")
    ip = client_ip(request)
    services.login_limiter.check(ip, user.username, "codes")
    good = totp.verify_code(user.totp_secret, body.code, services.clock())
    if not good and totp.use_recovery(user.totp_recovery, body.code) is None:
        services.login_limiter.failed(ip, user.username)
        raise AuthError("wrong code: give the authenticator app's code or a recovery code")
    async with services.db.session() as db:
        await db.execute(update(User).where(User.id == user.id)
                         .values(totp_enabled=False, totp_secret=None,
                                 totp_recovery=None))  # fmt: skip
        await db.commit()
    services.principals.clear()
    await services.audit.record_for(principal, "auth.totp.disable")
    return Response(status_code=204)
