"""Sundial's stdout conventions for shell tasks: what a line printed by the script means.

A ``shell_script_command`` reports through its standard output, one line at a time:

- ``**status=success`` / ``**status=failure``: the task's own report of success or failure
  (the same as ``POST /api/tasks/{id}/succeed`` / ``fail``; the first report wins);
- ``**metadata:KEY=VALUE``: a metadata entry ``KEY`` = ``VALUE``;
- any other line: a log entry with source ``shell`` and message ``[stdout] <line>``.

The raw output is captured as well (``GET /api/tasks/{id}/logs``). Entries are bounded per
attempt, so a script printing millions of lines cannot fill the database with them.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

STATUS_PREFIX = "**status="
METADATA_PREFIX = "**metadata:"
STATUSES = {"success": "succeeded", "failure": "failed"}
LOG_SOURCE = "shell"
MAX_LINE = 64 * 1024  # bytes; a longer line is cut into pieces of this size
MAX_ENTRIES = 10_000  # log and metadata entries one attempt may create from its output

Report = Callable[[str], Awaitable[object]]


@dataclass(slots=True)
class Parsed:
    """What some lines of output amount to."""

    logs: list[tuple[str, int, str, str]] = field(default_factory=list)  # uuid, at, source, msg
    metadata: list[tuple[str, int, str, str]] = field(default_factory=list)  # uuid, at, key, val
    statuses: list[str] = field(default_factory=list)  # succeeded | failed, in order

    def __bool__(self) -> bool:
        return bool(self.logs or self.metadata or self.statuses)


class ShellConventions:
    """Turns one attempt's stdout into log entries, metadata and a reported status."""

    def __init__(self, report: Report, *, max_entries: int | None = None) -> None:
        self.report = report
        self.max_entries = MAX_ENTRIES if max_entries is None else max_entries
        self._partial = b""
        self._entries = 0
        self._capped = False

    def feed(self, data: bytes, at: int, *, final: bool = False) -> Parsed:
        """Parse the complete lines in ``data`` (with ``final``, the unfinished one too)."""
        buf = self._partial + data
        lines = buf.split(b"\n")
        self._partial = lines.pop()
        if final and self._partial:
            lines.append(self._partial)
            self._partial = b""
        while len(self._partial) > MAX_LINE:  # no newline for a long time: do not hoard it
            lines.append(self._partial[:MAX_LINE])
            self._partial = self._partial[MAX_LINE:]
        out = Parsed()
        for raw in lines:
            for start in range(0, max(len(raw), 1), MAX_LINE):
                # a nanosecond apart, so entries read back in the order they were printed
                self._line(raw[start : start + MAX_LINE], at, out)
                at += 1
        return out

    def _line(self, raw: bytes, at: int, out: Parsed) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        if line.startswith(STATUS_PREFIX) and line[len(STATUS_PREFIX) :].strip() in STATUSES:
            out.statuses.append(STATUSES[line[len(STATUS_PREFIX) :].strip()])
            return
        if self._entries >= self.max_entries:
            if not self._capped:
                self._capped = True
                note = (
                    f"more than {self.max_entries} lines: further output is not turned into"
                    " log entries or metadata (it stays readable at /api/tasks/{id}/logs)"
                )
                out.logs.append((str(uuid.uuid4()), at, "taskd", note))
            return
        self._entries += 1
        if line.startswith(METADATA_PREFIX) and "=" in line:
            key, value = line[len(METADATA_PREFIX) :].split("=", 1)
            out.metadata.append((str(uuid.uuid4()), at, key, value))
            return
        out.logs.append((str(uuid.uuid4()), at, LOG_SOURCE, f"[stdout] {line}"))


def shell_conventions(
    att: Any, report: Callable[[str, str], Awaitable[object]]
) -> ShellConventions | None:
    """The conventions for an attempt of a Sundial shell task; None for every other attempt."""
    task = att.task
    if task.run.kind != "process" or task.job.runner != "local" or task.job.script is None:
        return None
    return ShellConventions(lambda status: report(att.uuid, status))
