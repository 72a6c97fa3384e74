"""API keys: created and revoked from the CLI, stored only as a SHA-256 hash, one scope each.

A key is 32 random bytes (256 bits, `secrets.token_urlsafe`). Such a key cannot be guessed
or brute-forced, so a fast hash protects it as well as bcrypt/argon2 would: those are slow
on purpose to protect low-entropy passwords, and a per-key salt would make lookup by hash
impossible. SHA-256 keeps each request's check one indexed lookup, and a leaked table
still gives no usable key.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine, insert, select, update

from risk_model.store import api_keys

Scope = Literal["read", "score", "write", "admin"]
SCOPES: tuple[str, ...] = ("read", "score", "write", "admin")
PREFIX = "srk_"


@dataclass(frozen=True)
class ApiKey:
    """A stored key without its secret."""

    id: int
    name: str
    scope: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None

    def allows(self, scope: str) -> bool:
        """`read` reads stored scores and alerts, `score` scores new records, `write` records interventions
        (advising tools), `admin` does all three."""
        return self.revoked_at is None and (self.scope == scope or self.scope == "admin")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: Engine, *, name: str, scope: str) -> tuple[ApiKey, str]:
    """Store a new key's hash and return it with the key itself, which is shown once and never stored."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not one of {list(SCOPES)}")
    if not name.strip():
        raise ValueError("a key needs a name saying who uses it, e.g. --name case-management")
    key = PREFIX + secrets.token_urlsafe(32)
    row: dict[str, Any] = {
        "name": name.strip(),
        "scope": scope,
        "key_hash": hash_key(key),
        "prefix": key[:10],
        "created_at": datetime.now(UTC),
    }
    with engine.begin() as conn:
        key_id = conn.execute(insert(api_keys).values(row).returning(api_keys.c.id)).scalar_one()
    return ApiKey(key_id, row["name"], scope, row["prefix"], row["created_at"]), key


def revoke_key(engine: Engine, key_id: int) -> ApiKey:
    """Mark a key revoked (kept, so the audit log still names it); raise if there is no such key."""
    with engine.begin() as conn:
        conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
    if row is None:
        raise ValueError(f"no API key with id {key_id}: see `student-risk keys list`")
    return _key(row)


def list_keys(engine: Engine) -> list[ApiKey]:
    with engine.connect() as conn:
        return [_key(r) for r in conn.execute(select(api_keys).order_by(api_keys.c.id)).mappings()]


def find_key(engine: Engine, key: str) -> ApiKey | None:
    """The active key matching `key`, or None (unknown or revoked)."""
    q = select(api_keys).where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
    with engine.connect() as conn:
        row = conn.execute(q).mappings().first()
    return _key(row) if row is not None else None


def _key(row) -> ApiKey:
    return ApiKey(row["id"], row["name"], row["scope"], row["prefix"], row["created_at"], row["revoked_at"])
