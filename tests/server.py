"""A real ``taskd serve`` process for tests that kill it (SIGKILL, SIGTERM) and restart it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

TOKEN = "server-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """Starts, kills and restarts taskd on one database file."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.db = workdir / "taskd.db"
        self.port = free_port()
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"Bearer {TOKEN}"}
        self.starts = 0

    async def start(self, within: float = 20.0) -> None:
        log = open(self.workdir / f"taskd-{self.starts}.log", "wb")  # noqa: SIM115
        self.starts += 1
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taskd", "serve", "--db", str(self.db), "--port",
             str(self.port), "--admin-token", TOKEN, "--docker-network", "none",
             "--kill-grace", "2", "--shutdown-grace", "2", *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{self.url}/ready") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if self.proc.poll() is not None:
                    raise RuntimeError(f"taskd exited with {self.proc.returncode}: {self.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"taskd did not become ready: {self.log()}")
                await asyncio.sleep(0.05)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("*.log")))

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, within: float = 15.0) -> float:
        """SIGTERM and wait; returns how long taskd took to exit."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(within)
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with aiohttp.ClientSession(headers=self.headers) as session:
            async with session.request(method, f"{self.url}{path}", **kw) as resp:
                if resp.content_type == "application/json":
                    return resp.status, await resp.json()
                return resp.status, await resp.text()
