"""Times as each API family writes them; stored as integer nanoseconds since the epoch."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from taskd.errors import BadRequest


def iso_ms(ns: int | None) -> str | None:
    """ISO-8601 with milliseconds in UTC (Sundial): 2017-01-25T10:00:00.000Z."""
    if ns is None:
        return None
    seconds, ms = divmod(ns // 1_000_000, 1000)
    return _iso_second(seconds) + _MILLIS[ms]  # half the time of formatting the millis


_MILLIS = tuple(f"{ms:03d}Z" for ms in range(1000))


@functools.lru_cache(maxsize=8192)
def _iso_second(seconds: int) -> str:
    # A page of 100 processes formats some 20,000 times, mostly of the same few seconds:
    # strftime was a quarter of its answer time.
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def parse_iso(value: str, what: str) -> int:
    """An ISO-8601 date-time (an offset or Z; naive means UTC) as nanoseconds."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{what} must be an ISO-8601 date-time, got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ns = int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
    # Nanoseconds fit 64 bits until 2262; a later bound means "no bound".
    return max(-(2**63), min(2**63 - 1, ns))


def ns_str(ns: int | None) -> str:
    """Nanoseconds as a decimal string (Daggy)."""
    return str(ns or 0)


def epoch_ms(ns: int | None) -> int | None:
    return None if ns is None else ns // 1_000_000


def epoch_s(ns: int | None) -> int | None:
    return None if ns is None else ns // 1_000_000_000
