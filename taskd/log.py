"""taskd's own log: one line per event, its fields as ``key=value`` (or one JSON object).

Call sites name an event and its fields: ``log.warning("slow write", seconds=0.2)``. Lines go
to standard error, with a UTC timestamp and the level; ``--log-format json`` writes one JSON
object a line for log collectors. Small on purpose: a daemon that runs for months should not
carry a logging framework and the terminal libraries it pulls in for a few dozen calls.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class _Config:
    level = LEVELS["info"]
    json = False
    captured: list[dict[str, Any]] | None = None


_config = _Config()


def configure(fmt: str = "human", level: str = "info") -> None:
    """Set the format (``human`` or ``json``) and the lowest level written."""
    _config.json = fmt == "json"
    _config.level = LEVELS.get(level.lower(), LEVELS["info"])


@contextlib.contextmanager
def capture() -> Iterator[list[dict[str, Any]]]:
    """Collect the events logged meanwhile (every level) as dicts instead of writing them."""
    saved, _config.captured = _config.captured, []
    try:
        yield _config.captured
    finally:
        _config.captured = saved


class Logger:
    """A named logger."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def debug(self, event: str, **fields: Any) -> None:
        self._log("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log("error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error with the exception being handled (its traceback)."""
        fields.setdefault("exc_info", True)
        self._log("error", event, fields)

    def _log(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if _config.captured is None and LEVELS[level] < _config.level:
            return
        exc_info = fields.pop("exc_info", None)
        if _config.captured is not None:
            _config.captured.append({"event": event, **fields, "log_level": level})
            return
        line = _render(level, event, fields, _traceback(exc_info))
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed or full stderr must not fail the caller
            pass


def get_logger(name: str = "taskd") -> Logger:
    return Logger(name)


def _traceback(exc_info: Any) -> str | None:
    if not exc_info:
        return None
    if isinstance(exc_info, BaseException):
        exc: BaseException | None = exc_info
    else:
        exc = sys.exc_info()[1]
    if exc is None:
        return None
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def _render(level: str, event: str, fields: dict[str, Any], trace: str | None) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if _config.json:
        doc = {"timestamp": stamp, "level": level, "event": event, **fields}
        if trace:
            doc["exception"] = trace
        return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS).decode() + "\n"
    pairs = " ".join(f"{key}={_value(value)}" for key, value in fields.items())
    line = f"{stamp} [{level:<8}] {event:<30} {pairs}".rstrip()
    return f"{line}\n{trace}\n" if trace else f"{line}\n"


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text) if isinstance(value, str) and (" " in text or not text) else text
