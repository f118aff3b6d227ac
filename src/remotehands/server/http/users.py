"""``/v1/users``: people who log in, and their roles.

The rules, for an actor changing a target user:

- admins and the owner manage users; a new user's role is below the creator's (so the owner
  creates admins, an admin creates operators and viewers); there is exactly one owner, created by
  ``remotehands server init``;
- nobody changes or deletes a user of equal or higher role, except the owner;
- anyone changes their own password (giving the current one), nobody their own role or state;
- a new password or disabling a user ends that user's sessions (but the session that changed
  its own password).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from remotehands.errors import ForbiddenError, NotFoundError, ValidationError
from remotehands.server.auth import (
    MIN_PASSWORD,
    Principal,
    client_ip,
    hash_secret,
    normalise_username,
    request_credential,
    require_role,
    require_unrestricted,
    role_rank,
)
from remotehands.server.db.models import ApiToken, Session, User, new_id
from remotehands.server.services import Services, get_services

__all__ = ["create_user", "router"]

router = APIRouter(prefix="/v1/users", tags=["users"])

AssignableRole = Literal["viewer", "operator", "admin"]


def _username(value: str) -> str:
    try:
        return normalise_username(value)
    except ValidationError as err:
        raise ValueError(err.details) from err


class UserOut(BaseModel):
    """A user as the API shows it (never the password hash)."""

    id: str
    username: str
    role: str
    disabled: bool
    created_at: datetime


class UsersOut(BaseModel):
    """Every user."""

    users: list[UserOut]


class UserCreate(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")

    username: str
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024)
    role: AssignableRole = "viewer"

    @field_validator("username")
    @classmethod
    def _check_username(cls, value: str) -> str:
        return _username(value)


class UserPatch(BaseModel):
    """Changes to a user; ``current_password`` is required to change your own password."""

    model_config = ConfigDict(extra="forbid")

    role: AssignableRole | None = None
    password: str | None = Field(None, min_length=MIN_PASSWORD, max_length=1024)
    current_password: str | None = Field(None, max_length=1024)
    disabled: bool | None = None


def _out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        role=user.role,
        disabled=user.disabled,
        created_at=user.created_at,
    )


async def create_user(services: Services, username: str, password: str, role: str) -> User:
    """Insert a user (used by the API and by ``remotehands server init``); raises
    :class:`ValidationError` when the name is taken."""
    user = User(
        id=new_id("usr"),
        username=username,
        password_hash=await services.passwords.hash(password),
        role=role,
        created_at=services.clock(),
        disabled=False,
    )
    async with services.db.session() as db:
        db.add(user)
        try:
            await db.commit()
        except IntegrityError as err:
            raise ValidationError(f"user {username} already exists") from err
    return user


async def _get(services: Services, ref: str) -> User:
    """The user whose id or username is ``ref``."""
    async with services.db.session() as db:
        user = await db.get(User, ref)
        if user is None:
            user = await db.scalar(select(User).where(User.username == ref.strip().lower()))
    if user is None:
        raise NotFoundError(f"no user {ref}")
    return user


def _check_may_manage(principal: Principal, target: User, verb: str) -> None:
    if principal.rank < role_rank("admin"):
        raise ForbiddenError(f"only admins and the owner may {verb} other users")
    if principal.role != "owner" and role_rank(target.role) >= principal.rank:
        raise ForbiddenError(
            f"{principal.role}s may not {verb} user {target.username} ({target.role}): "
            "equal or higher role"
        )


def _check_may_grant(principal: Principal, role: str) -> None:
    if role_rank(role) >= principal.rank:
        raise ForbiddenError(f"{principal.role}s may only grant roles below their own, not {role}")


@router.get("")
async def list_users(
    request: Request, principal: Annotated[Principal, require_role("admin")]
) -> UsersOut:
    """Every user, by name."""
    require_unrestricted(principal, "users")
    services = get_services(request)
    async with services.db.session() as db:
        users = (await db.scalars(select(User).order_by(User.username))).all()
    return UsersOut(users=[_out(u) for u in users])


@router.post("", status_code=201)
async def create(
    body: UserCreate,
    request: Request,
    principal: Annotated[Principal, require_role("admin", writes=True)],
) -> UserOut:
    """Add a user with a role below the creator's."""
    require_unrestricted(principal, "users")
    _check_may_grant(principal, body.role)
    services = get_services(request)
    user = await create_user(services, body.username, body.password, body.role)
    await services.audit.record_for(
        principal,
        "user.create",
        params={"user_id": user.id, "username": user.username, "role": user.role},
    )
    return _out(user)


@router.get("/{user_id}", summary="Get a user (by id or username)")
async def get_user(
    user_id: str, request: Request, principal: Annotated[Principal, require_role("viewer")]
) -> UserOut:
    """One user: yourself, or anyone for admins."""
    require_unrestricted(principal, "users")
    user = await _get(get_services(request), user_id)
    if user.id != principal.user_id and principal.rank < role_rank("admin"):
        raise ForbiddenError("only admins and the owner may see other users")
    return _out(user)


@router.patch("/{user_id}")
async def update_user(
    user_id: str,
    body: UserPatch,
    request: Request,
    principal: Annotated[Principal, require_role("viewer", writes=True)],
) -> UserOut:
    """Change a user's role, password or disabled state (see the module's rules)."""
    require_unrestricted(principal, "users")
    services = get_services(request)
    target = await _get(services, user_id)
    changed: dict[str, object] = {}
    if target.id == principal.user_id:
        if body.role is not None or body.disabled is not None:
            raise ForbiddenError("you cannot change your own role or disable yourself")
        if body.password is not None:
            await _check_current_password(services, request, target, body.current_password)
    else:
        _check_may_manage(principal, target, "change")
        if body.role is not None and body.role != target.role:
            _check_may_grant(principal, body.role)
            changed["role"] = body.role
    new_hash = await services.passwords.hash(body.password) if body.password else None
    async with services.db.session() as db:
        user = await db.get(User, target.id)
        if user is None:
            raise NotFoundError(f"no user {user_id}")
        if body.role is not None and "role" in changed:
            user.role = body.role
        if body.disabled is not None and body.disabled != user.disabled:
            user.disabled = body.disabled
            changed["disabled"] = body.disabled
        if new_hash is not None:
            user.password_hash = new_hash
        if new_hash is not None or user.disabled:
            # End the user's sessions, except the one changing its own password.
            ending = delete(Session).where(Session.user_id == user.id)
            if user.id == principal.user_id and principal.kind == "user":
                current = request_credential(request)
                ending = ending.where(Session.token_hash != hash_secret(current))
            await db.execute(ending)
        await db.commit()
    services.principals.clear()  # a new role, a disabled user or ended sessions count at once
    fields = sorted(changed) + (["password"] if new_hash is not None else [])
    if fields:
        await services.audit.record_for(
            principal,
            "user.update",
            params={"user_id": user.id, "username": user.username, "changed": fields, **changed},
        )
    return _out(user)


async def _check_current_password(
    services: Services, request: Request, user: User, current: str | None
) -> None:
    if not current:
        raise ValidationError("body.current_password: required to change your own password")
    ip = client_ip(request)
    services.login_limiter.check(ip, user.username, "password checks")
    if not await services.passwords.verify(user.password_hash, current):
        services.login_limiter.failed(ip, user.username)
        raise ForbiddenError("the current password is wrong")


@router.delete("/{user_id}", status_code=204)
async def delete_user(
    user_id: str,
    request: Request,
    principal: Annotated[Principal, require_role("admin", writes=True)],
) -> Response:
    """Remove a user with their sessions and API tokens."""
    require_unrestricted(principal, "users")
    services = get_services(request)
    target = await _get(services, user_id)
    if target.id == principal.user_id:
        raise ForbiddenError("you cannot delete yourself")
    _check_may_manage(principal, target, "delete")
    async with services.db.session() as db:
        await db.execute(delete(Session).where(Session.user_id == target.id))
        await db.execute(delete(ApiToken).where(ApiToken.user_id == target.id))
        await db.execute(delete(User).where(User.id == target.id))
        await db.commit()
    services.principals.clear()
    await services.audit.record_for(
        principal,
        "user.delete",
        params={"user_id": target.id, "username": target.username, "role": target.role},
    )
    return Response(status_code=204)
