"""Credentials: the admin token, viewer tokens, and per-attempt task tokens.

Tokens are compared in constant time and stored only as sha256 hashes; the admin token lives
in a 0600 file next to the database (or comes from the configuration) and is printed once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from taskd.models import now_ns
from taskd.store import Store, tokens


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_task_token(attempt_uuid: str) -> tuple[str, str]:
    """A callback token bound to one attempt, and its hash for the store.

    The attempt uuid is part of the token so a lookup needs no index on secrets.
    """
    token = f"{attempt_uuid}.{secrets.token_urlsafe(24)}"
    return token, digest(token)


def load_admin_token(configured: str | None, token_file: Path) -> tuple[str, bool]:
    """The admin token, and whether it was just generated (so the caller prints it once)."""
    if configured:
        return configured, False
    try:
        existing = token_file.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing, False
    token = secrets.token_urlsafe(32)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, True


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: admin, viewer, task (with its attempt) or nobody.

    ``ended_task`` is the token of an attempt that has finished: known, but good for nothing.
    """

    role: str
    attempt_uuid: str | None = None

    @property
    def can_read(self) -> bool:
        return self.role in ("admin", "viewer")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


ANONYMOUS = Principal("anonymous")


class Authenticator:
    """Turns a presented token into a Principal."""

    def __init__(self, store: Store, admin_token: str) -> None:
        self.store = store
        self.admin_token = admin_token
        self._cache: dict[str, str] = {}  # hash -> role of viewer/admin tokens seen

    async def identify(self, token: str | None) -> Principal:
        if not token or not token.strip():  # a blank secret is no secret
            return ANONYMOUS
        if hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Principal("admin")
        hashed = digest(token)
        role = self._cache.get(hashed)
        if role is None:
            role = await self.store.read(tokens.role_of, hashed)
            if role is not None:
                self._cache[hashed] = role
        if role is not None:
            return Principal(role)
        attempt_uuid, dot, _ = token.partition(".")
        if dot:
            found = await self.store.read(tokens.attempt_token, attempt_uuid)
            if found is not None and hmac.compare_digest(found[0], hashed):
                # A task token is good while its attempt runs: a late callback of a finished
                # attempt (a stray process, a leaked token) must not change what was stored.
                role = "task" if found[1] else "ended_task"
                return Principal(role, attempt_uuid=attempt_uuid)
        return ANONYMOUS


async def issue_token(store: Store, role: str, name: str) -> str:
    """A new viewer or admin token; printed once, stored only as its hash."""
    token = secrets.token_urlsafe(32)
    await store.write(tokens.insert_token, digest(token), role, name, now_ns())
    return token
