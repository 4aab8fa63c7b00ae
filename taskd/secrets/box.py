"""Secrets at rest: AES-256-GCM with a key kept beside the database (mode 0600) or given.

The key never goes into the database, so a copy of the database alone (a backup, a stolen
file) does not reveal any secret. Each value is sealed with a fresh nonce and its name as
associated data, so a value cannot be moved to another name unnoticed.
"""

from __future__ import annotations

import base64
import functools
import os
import secrets
from pathlib import Path
from typing import Any

from taskd.errors import TaskdError


class SecretsKeyError(TaskdError):
    """The secrets key file is unreadable or malformed."""


def load_or_create_key(path: Path) -> bytes:
    """The 32-byte key in ``path`` (base64), created with mode 0600 when absent."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_bytes(32)  # what AESGCM.generate_key(256) returns
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(key).decode() + "\n")
        return key
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SecretsKeyError(f"the secrets key in {path} is not 32 bytes of base64")
    return key


class Box:
    """Seals and opens secret values with one key.

    The cipher library (some 6 MB of resident memory) is loaded when the first secret is
    sealed or opened: a server without secrets never needs it.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    @functools.cached_property
    def _aead(self) -> Any:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self._key)

    def seal(self, name: str, value: str) -> tuple[bytes, bytes]:
        nonce = secrets.token_bytes(12)
        return nonce, self._aead.encrypt(nonce, value.encode(), name.encode())

    def open(self, name: str, nonce: bytes, sealed: bytes) -> str:
        """The value; ``InvalidSecret`` when it was not sealed with this key and name."""
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(nonce, sealed, name.encode()).decode()
        except InvalidTag:
            raise InvalidSecret(name) from None


class InvalidSecret(TaskdError):
    """A stored value that does not open with this key (another key, or a changed row)."""
