"""``/v1/tokens``: API tokens for automation.

A token (``rht_...``) is shown once, when created; the server keeps its SHA-256 and its first
characters (``prefix``) so that lists can tell tokens apart. A token's role is at most its
creator's; it may be read-only and limited to devices with some tags. A token used to create
another one passes its limits on: the new token is never wider than its creator.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from remotehands.errors import ForbiddenError, NotFoundError
from remotehands.server.auth import (
    API_TOKEN_PREFIX,
    Principal,
    Role,
    hash_secret,
    new_secret,
    require_role,
    role_rank,
)
from remotehands.server.db.models import ApiToken, User, new_id
from remotehands.server.services import get_services

__all__ = ["TAG_PATTERN", "check_tags", "router"]

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])

PREFIX_LENGTH = len(API_TOKEN_PREFIX) + 8
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/=-]{0,63}$")
MAX_TAGS = 64


def check_tags(tags: list[str]) -> list[str]:
    """``tags`` without duplicates, in order; raises ``ValueError`` on a malformed tag."""
    seen: dict[str, None] = {}
    for tag in tags:
        if not TAG_PATTERN.match(tag):
            raise ValueError(
                f"tag {tag!r}: 1-64 characters, letters, digits and _ . : / = -, "
                "starting with a letter or digit"
            )
        seen[tag] = None
    return list(seen)


class TokenCreate(BaseModel):
    """A new API token; ``role`` defaults to the creator's."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    role: Role | None = None
    read_only: bool = False
    tags: list[str] | None = Field(
        None, max_length=MAX_TAGS, description="limit to devices with one of these tags"
    )
    expires_in_s: int | None = Field(None, gt=0, le=10 * 365 * 86400)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        # No tags, or an empty list: not limited.
        return check_tags(value) if value else None


class TokenCreated(BaseModel):
    """The new token, with its secret: shown this once."""

    id: str
    token: str
    name: str
    role: str
    read_only: bool
    tags: list[str] | None
    created_at: datetime
    expires_at: datetime | None


class TokenOut(BaseModel):
    """A token as lists show it: never the secret."""

    id: str
    name: str
    prefix: str
    user_id: str
    username: str
    role: str
    read_only: bool
    tags: list[str] | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None


class TokensOut(BaseModel):
    """A list of tokens."""

    tokens: list[TokenOut]


@router.post("", status_code=201)
async def create_token(
    body: TokenCreate,
    request: Request,
    principal: Annotated[Principal, require_role("viewer", writes=True)],
) -> TokenCreated:
    """Create a token for the caller's user."""
    role = body.role or principal.role
    if role_rank(role) > principal.rank:
        raise ForbiddenError(f"a token's role is at most yours ({principal.role}), not {role}")
    read_only = body.read_only or principal.read_only
    tags = body.tags
    if principal.tags is not None and (tags is None or not set(tags) <= set(principal.tags)):
        raise ForbiddenError(
            f"this token is limited to tags {', '.join(principal.tags)}: "
            "a token it creates must be limited to some of them"
        )
    services = get_services(request)
    secret = new_secret(API_TOKEN_PREFIX)
    now = services.clock()
    expires_at = now + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
    token = ApiToken(
        id=new_id("tok"),
        name=body.name,
        token_hash=hash_secret(secret),
        prefix=secret[:PREFIX_LENGTH],
        user_id=principal.user_id,
        role=role,
        read_only=read_only,
        tags=tags,
        created_at=now,
        last_used_at=None,
        revoked_at=None,
        expires_at=expires_at,
    )
    async with services.db.session() as db:
        db.add(token)
        await db.commit()
    await services.audit.record_for(
        principal,
        "token.create",
        params={
            "token_id": token.id,
            "name": token.name,
            "role": role,
            "read_only": read_only,
            "tags": tags,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return TokenCreated(
        id=token.id,
        token=secret,
        name=token.name,
        role=role,
        read_only=read_only,
        tags=tags,
        created_at=token.created_at,
        expires_at=expires_at,
    )


@router.get("")
async def list_tokens(
    request: Request,
    principal: Annotated[Principal, require_role("viewer")],
    include_revoked: Annotated[bool, Query()] = False,
) -> TokensOut:
    """The caller's tokens; admins and the owner see everyone's."""
    services = get_services(request)
    statement = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
    if principal.rank < role_rank("admin") or principal.tags is not None:
        statement = statement.where(ApiToken.user_id == principal.user_id)
    if not include_revoked:
        statement = statement.where(ApiToken.revoked_at.is_(None))
    statement = statement.order_by(ApiToken.created_at, ApiToken.id)
    async with services.db.session() as db:
        rows = (await db.execute(statement)).all()
    return TokensOut(
        tokens=[
            TokenOut(
                id=t.id,
                name=t.name,
                prefix=t.prefix,
                user_id=t.user_id,
                username=username,
                role=t.role,
                read_only=t.read_only,
                tags=t.tags,
                created_at=t.created_at,
                last_used_at=t.last_used_at,
                revoked_at=t.revoked_at,
                expires_at=t.expires_at,
            )
            for t, username in rows
        ]
    )


@router.delete("/{token_id}", status_code=204)
async def revoke_token(
    token_id: str,
    request: Request,
    principal: Annotated[Principal, require_role("viewer", writes=True)],
) -> Response:
    """Revoke a token at once: your own, or (admins, the owner) one of a lower-role user."""
    services = get_services(request)
    async with services.db.session() as db:
        row = (
            await db.execute(
                select(ApiToken, User)
                .join(User, User.id == ApiToken.user_id)
                .where(ApiToken.id == token_id)
            )
        ).first()
        if row is None:
            raise NotFoundError(f"no API token {token_id}")
        token, owner = row.ApiToken, row.User
        if owner.id != principal.user_id:
            if principal.rank < role_rank("admin") or principal.tags is not None:
                raise NotFoundError(f"no API token {token_id}")
            if principal.role != "owner" and role_rank(owner.role) >= principal.rank:
                raise ForbiddenError(
                    f"{principal.role}s may not revoke tokens of {owner.username} ({owner.role})"
                )
        if token.revoked_at is not None:
            return Response(status_code=204)
        token.revoked_at = services.clock()
        await db.commit()
    services.principals.clear()
    await services.audit.record_for(
        principal,
        "token.revoke",
        params={"token_id": token_id, "name": token.name, "user": owner.username},
    )
    return Response(status_code=204)
