"""The ``taskd`` client, run as a real process against a real ``taskd serve``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server import TOKEN, Server


@dataclass
class Result:
    code: int
    out: str
    err: str


class Cli:
    """Runs ``python -m taskd ...`` with its own config dir, against one server."""

    def __init__(self, workdir: Path, server: Server | None) -> None:
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TASKD_")}
        self.env["TASKD_CONFIG_DIR"] = str(workdir / "config")
        self.env["COLUMNS"] = "200"  # wide tables: cells stay on one line for the asserts
        if server is not None:
            self.env["TASKD_URL"] = server.url
            self.env["TASKD_TOKEN"] = TOKEN

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
                 timeout: float = 60) -> Result:  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "taskd", *args], capture_output=True, text=True,
            input=input, env={**self.env, **(env or {})}, cwd=self.workdir, timeout=timeout,
        )  # fmt: skip
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, **kw) -> str:
        r = self(*args, **kw)
        assert r.code == 0, f"taskd {' '.join(args)} -> {r.code}\n{r.out}\n{r.err}"
        return r.out

    def fails(self, *args: str, **kw) -> str:
        """The one-line error of a command that must fail."""
        r = self(*args, **kw)
        assert r.code != 0, f"taskd {' '.join(args)} succeeded:\n{r.out}"
        lines = r.err.strip().splitlines()
        assert len(lines) == 1, f"not a one-line error: {r.err!r}"
        assert "Traceback" not in r.err
        return lines[0]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, "--local-user", "root")
    asyncio.run(srv.start())
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def cli(tmp_path: Path, server: Server) -> Cli:
    return Cli(tmp_path, server)
