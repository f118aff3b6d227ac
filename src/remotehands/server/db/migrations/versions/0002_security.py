"""Two-factor sign-in for users, and a hash chain through the audit log.

- ``users.totp_secret`` (base32, set while enrolling), ``users.totp_enabled`` (after a code
  confirmed it) and ``users.totp_recovery`` (SHA-256 hashes of the unused recovery codes);
- ``audit.prev_hash`` and ``audit.hash``: each entry's SHA-256 over its own fields and the hash
  of the entry before it, so an edited or deleted row breaks the chain. Entries written before
  this revision have none and are not part of the chain.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the TOTP columns to users and the chain columns to audit."""
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("totp_secret", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("totp_enabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("totp_recovery", sa.JSON(), nullable=True))
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("audit") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("totp_recovery")
        batch.drop_column("totp_enabled")
        batch.drop_column("totp_secret")
