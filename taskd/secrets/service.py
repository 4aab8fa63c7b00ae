"""The secrets of one server: sealed in the store, open in memory for jobs and masking."""

from __future__ import annotations

import time
from pathlib import Path

from taskd.errors import BadRequest, NotFound
from taskd.secrets import MASKER, NAME
from taskd.secrets.box import Box, InvalidSecret, SecretsKeyError, load_or_create_key
from taskd.store import Store
from taskd.store import secrets as q

MAX_VALUE = 64 * 1024


class Secrets:
    """Named secrets; ``values`` is what jobs' references resolve against."""

    def __init__(self, store: Store, key_file: Path) -> None:
        self.store = store
        self.key_file = key_file
        self.values: dict[str, str] = {}
        self.meta: dict[str, dict[str, int]] = {}
        self._box: Box | None = None
        # Every value this server has held: a replaced or deleted value stays masked, since
        # jobs started with it may still print it.
        self._masked: set[str] = set()

    async def start(self) -> None:
        """Open (or make) the key and load every secret."""
        rows = await self.store.read(q.all_rows)
        if rows and not self.key_file.exists():
            # A new key could open none of them: say so instead of starting without them.
            raise SecretsKeyError(
                f"the database holds {len(rows)} secrets but their key {self.key_file} is"
                " missing; put back the key they were sealed with (--secrets-key-file)"
            )
        self._box = Box(load_or_create_key(self.key_file))
        for row in rows:
            try:
                value = self._box.open(row["name"], row["nonce"], row["value"])
            except InvalidSecret:
                raise SecretsKeyError(
                    f"secret {row['name']!r} cannot be opened with the key in {self.key_file};"
                    " is it the key the database was made with?"
                ) from None
            self.values[row["name"]] = value
            self._masked.add(value)
            self.meta[row["name"]] = {"created_at": row["created_at"],
                                      "updated_at": row["updated_at"]}  # fmt: skip
        MASKER.update(self._masked)

    async def put(self, name: str, value: object) -> bool:
        if not NAME.fullmatch(name):
            raise BadRequest(f"secret name {name!r} must be 1-128 letters, digits, '_', '.' or '-'")
        if not isinstance(value, str) or not value:
            raise BadRequest('the body must be {"value": "<a non-empty string>"}')
        if len(value.encode()) > MAX_VALUE or "\x00" in value:
            raise BadRequest(f"a secret's value must be under {MAX_VALUE} bytes, without NUL")
        assert self._box is not None
        nonce, sealed = self._box.seal(name, value)
        at = time.time_ns()
        new = await self.store.write(q.put, name, nonce, sealed, at)
        self.values[name] = value
        old = self.meta.get(name, {})
        self.meta[name] = {"created_at": old.get("created_at", at), "updated_at": at}
        self._masked.add(value)
        MASKER.update(self._masked)
        return new

    async def delete(self, name: str) -> None:
        if not await self.store.write(q.delete, name):
            raise NotFound(f"no secret named {name!r}")
        self.values.pop(name, None)
        self.meta.pop(name, None)
        # Still masked: output of jobs that already had it may yet arrive.
