"""How the client reaches a server: URL and token resolution, contexts, and HTTP calls.

The client never opens the database. It finds a server, in order, from ``--url``/``--token``
(or ``TASKD_URL``/``TASKD_TOKEN``), a named context, the current context, and finally the
local server that ``taskd serve`` recorded in the user's config dir (with its token file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import click

DEFAULT_URL = "http://127.0.0.1:7070"
T = TypeVar("T")


class CliError(click.ClickException):
    """One line on stderr and exit code 1 (``code`` may say otherwise)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code

    def show(self, file: Any = None) -> None:
        click.echo(f"taskd: {self.format_message()}", err=True)


def config_dir() -> Path:
    """Where contexts live: ``TASKD_CONFIG_DIR``, else the platform's user config dir."""
    explicit = os.environ.get("TASKD_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    import platformdirs

    return Path(platformdirs.user_config_dir("taskd"))


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by its owner only (it holds tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def contexts_file() -> Path:
    return config_dir() / "contexts.json"


def load_contexts() -> dict[str, Any]:
    data = read_json_file(contexts_file())
    data.setdefault("contexts", {})
    data.setdefault("current", None)
    return data


def local_server_file() -> Path:
    return config_dir() / "local-server.json"


def record_local_server(url: str, token_file: Path | None) -> None:
    """Called by ``taskd serve``: lets clients on this machine find it and its token file."""
    # A read-only home must not stop the server; clients can still use --url.
    with contextlib.suppress(OSError):
        write_private(
            local_server_file(),
            {"url": url, "token_file": str(token_file.resolve()) if token_file else None},
        )


def read_token_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Target:
    """The server a command talks to, and the credentials it sends."""

    url: str
    token: str | None
    source: str  # where the URL came from, for error messages


def resolve(opts: dict[str, Any]) -> Target:
    """The server and token for this invocation (see the module docstring for the order)."""
    url, token = opts.get("url"), opts.get("token")
    contexts = load_contexts()
    name = opts.get("context") or (None if url else contexts["current"])
    source = "--url" if url else ""
    if name:
        ctx = contexts["contexts"].get(name)
        if ctx is None:
            raise CliError(f"no context named {name!r} (see: taskd context list)")
        url = url or ctx["url"]
        token = token or ctx.get("token")
        source = source or f"context {name!r}"
    local = read_json_file(local_server_file())
    if not url:
        url = local.get("url") or DEFAULT_URL
        source = "the local server"
    url = url.rstrip("/")
    if token is None and local.get("url", "").rstrip("/") == url and local.get("token_file"):
        token = read_token_file(Path(local["token_file"]))
    if token is None:
        db = Path(os.environ.get("TASKD_DB", "taskd.db"))
        token = read_token_file(db.with_name(db.name + ".token"))
    return Target(url, token, source)


def error_text(body: Any) -> str:
    """The message of an error reply, whatever the family's envelope."""
    if not isinstance(body, dict):
        return str(body).strip()[:300]
    message = body.get("message") or body.get("error") or ""
    details = body.get("errors")
    if details is None and isinstance(body.get("data"), dict):
        details = body["data"].get("validationErrors")
    details = [str(d) for d in details or () if str(d) not in str(message)]
    if details:
        message = f"{message}: {'; '.join(details)}" if message else "; ".join(details)
    return str(message) or "request failed"


class Client:
    """An aiohttp session to one server; every failure becomes a one-line ``CliError``."""

    def __init__(self, target: Target) -> None:
        self.target = target
        headers = {"User-Agent": "taskd-cli"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        self.session = aiohttp.ClientSession(headers=headers)

    async def close(self) -> None:
        await self.session.close()

    async def call(
        self, method: str, path: str, *, ok: tuple[int, ...] = (), what: str = "", **kw: Any
    ) -> Any:
        """The JSON (or text) reply of a request; a readable error for any failure."""
        async with self.open(method, path, ok=ok, what=what, **kw) as resp:
            if resp.status == 204:
                return None
            if resp.content_type == "application/json":
                return await resp.json()
            return await resp.text()

    def open(self, method: str, path: str, *, ok: tuple[int, ...] = (), what: str = "", **kw: Any):
        """An async context manager over the checked response (for streaming bodies)."""
        return _Checked(self, method, path, ok, what, kw)

    async def raise_for(self, resp: aiohttp.ClientResponse, what: str) -> None:
        try:
            body: Any = await resp.json(content_type=None)
        except (ValueError, aiohttp.ClientError):
            body = await resp.text()
        text = error_text(body)
        if resp.status == 401:
            raise CliError(
                f"bad token: {self.target.url} refused the credentials (give --token, "
                "TASKD_TOKEN or a context)"
            )
        if resp.status == 403:
            raise CliError(f"not allowed: {text}")
        if resp.status == 404:
            raise CliError(f"not found: {what or text}" if what else f"not found: {text}")
        raise CliError(f"{text} (HTTP {resp.status})")


class _Checked:
    def __init__(self, client: Client, method: str, path: str, ok, what: str, kw) -> None:
        self.client, self.method, self.path, self.ok, self.what, self.kw = (
            client, method, path, ok, what, kw,
        )  # fmt: skip
        self.resp: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        url = self.client.target.url + self.path
        try:
            self.resp = await self.client.session.request(self.method, url, **self.kw)
        except aiohttp.InvalidURL:
            raise CliError(f"not a server URL: {self.client.target.url}") from None
        except (aiohttp.ClientConnectionError, OSError):
            raise CliError(
                f"no taskd server at {self.client.target.url} ({self.client.target.source}); "
                "is `taskd serve` running?"
            ) from None
        if self.resp.status >= 400 and self.resp.status not in self.ok:
            try:
                await self.client.raise_for(self.resp, self.what)
            finally:
                self.resp.release()
        return self.resp

    async def __aexit__(self, *exc: object) -> None:
        if self.resp is not None:
            self.resp.release()


def run(opts: dict[str, Any], work: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``work`` with a client of the resolved server, on a fresh event loop."""
    target = resolve(opts)

    async def main() -> T:
        client = Client(target)
        try:
            return await work(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        raise CliError("interrupted", code=130) from None


async def lines(resp: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The body of a streaming reply, as it arrives, by text chunk."""
    async for chunk in resp.content.iter_any():
        yield chunk.decode(errors="replace")
