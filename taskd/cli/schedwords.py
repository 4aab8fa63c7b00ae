"""Schedules for people: cron in words, and upcoming fire times with DST flagged.

Pure (no I/O): it reuses the scheduler's own parsing so the client shows what the server does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from taskd.processes import schedule as sched

DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]


def words(doc: dict[str, Any] | None) -> str:
    """``At 02:30, Mon-Fri (Europe/Berlin)``; the expression itself when no phrase fits."""
    if not doc:
        return "manual only"
    if "continuous_schedule" in doc:
        buffer = doc["continuous_schedule"].get("buffer_seconds", 0)
        return f"continuously, {buffer}s after each start"
    cron = doc.get("cron_schedule") or {}
    sec = cron.get("seconds", "0")
    mins, hours = cron.get("minutes", "*"), cron.get("hours", "*")
    dom, month = cron.get("day_of_month", "*"), cron.get("month", "*")
    dow = cron.get("day_of_week", "*")
    tz = cron.get("timezone", "UTC")
    phrase = None
    if sec == "0":
        if mins == "*" and hours == "*":
            phrase = "Every minute"
        elif mins.startswith("*/") and hours == "*":
            phrase = f"Every {mins[2:]} minutes"
        elif mins.isdigit() and hours == "*":
            phrase = f"At minute {mins} of every hour"
        elif mins.isdigit() and hours.isdigit():
            phrase = f"At {int(hours):02d}:{int(mins):02d}"
        elif mins.isdigit() and hours.startswith("*/"):
            phrase = f"At minute {mins}, every {hours[2:]} hours"
    if phrase is None:
        expr = " ".join(v for v in (sec, mins, hours, dom, month, dow))
        return f"cron {expr} ({tz})"
    if dom not in ("*", "?"):
        phrase += f", on day {dom}"
    if month != "*":
        phrase += f", in month {month}"
    if dow not in ("*", "?"):
        phrase += f", {day_words(dow)}"
    return f"{phrase} ({tz})"


def day_words(dow: str) -> str:
    def one(v: str) -> str:
        return DAYS[int(v) % 7] if v.isdigit() else v.title()

    parts = []
    for piece in dow.split(","):
        if "-" in piece:
            a, b = piece.split("-", 1)
            parts.append(f"{one(a)}-{one(b)}")
        else:
            parts.append(one(piece))
    return ", ".join(parts)


@dataclass(frozen=True)
class Fire:
    """An upcoming slot: when it fires (None for a wall time the zone skips) and a note."""

    wall: datetime
    at: datetime | None
    note: str = ""


def upcoming(doc: dict[str, Any] | None, now: datetime, count: int) -> list[Fire]:
    """The next ``count`` fires of a cron schedule, with DST gaps and repeats flagged."""
    if not doc or "cron_schedule" not in doc:
        return []
    s = sched.parse_schedule(doc)
    assert isinstance(s, sched.CronSchedule)
    return list(_walk(s, now, count))


def _walk(s: sched.CronSchedule, now: datetime, count: int) -> Iterator[Fire]:
    tz = ZoneInfo(s.timezone)
    start = now.astimezone(tz).replace(tzinfo=None, microsecond=0)
    it = croniter(s.expression, start, ret_type=datetime, second_at_beginning=True)
    fired = 0
    for _ in range(count * 50 + 100):
        wall = it.get_next()
        first = wall.replace(tzinfo=tz, fold=0)
        instant = first.astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) != wall:
            yield Fire(wall, None, "skipped: this local time does not exist (DST gap)")
            continue
        if instant <= now.astimezone(UTC):
            continue
        second = wall.replace(tzinfo=tz, fold=1)
        note = ""
        if second.utcoffset() != first.utcoffset():
            note = "repeated local time (DST): fires once, at the first"
        yield Fire(wall, instant, note)
        fired += 1
        if fired == count:
            return
