"""Turning stored values into what a person reads: schedules in words, durations, ANSI colours."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
MONTHS = [
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def _num(field: str) -> int | None:
    return int(field) if field.isdigit() else None


def _days(dow: str) -> str:
    def day(v: str) -> str:
        return DAYS[int(v) % 7] if v.isdigit() else v.capitalize()

    if "-" in dow and "," not in dow:
        a, b = dow.split("-", 1)
        return f"{day(a)} to {day(b)}"
    return ", ".join(day(v) for v in dow.split(","))


def schedule_words(schedule: dict[str, Any] | None) -> str:
    """A schedule as a sentence with its time zone: "At 02:30, Monday to Friday (Europe/Berlin)"."""
    if not schedule:
        return "Manual runs only"
    if "continuous_schedule" in schedule:
        buffer = (schedule["continuous_schedule"] or {}).get("buffer_seconds", 0) or 0
        return (
            f"Continuously, {duration(buffer)} after each run starts" if buffer else "Continuously"
        )
    cron = schedule.get("cron_schedule") or {}
    sec = str(cron.get("seconds", "0"))
    minute = str(cron.get("minutes", "*"))
    hour = str(cron.get("hours", "*"))
    dom = str(cron.get("day_of_month", "*")).replace("?", "*")
    month = str(cron.get("month", "*")).replace("?", "*")
    dow = str(cron.get("day_of_week", "*")).replace("?", "*")
    tz = cron.get("timezone") or "UTC"
    m, h, s = _num(minute), _num(hour), _num(sec)
    if m is not None and h is not None:
        when = f"At {h:02d}:{m:02d}" + (f":{s:02d}" if s else "")
    elif m is not None and hour == "*":
        when = f"At minute {m} of every hour"
    elif minute.startswith("*/") and hour == "*":
        when = f"Every {minute[2:]} minutes"
    elif minute == "*" and hour == "*":
        when = "Every second" if sec == "*" else "Every minute"
    elif sec.startswith("*/"):
        when = f"Every {sec[2:]} seconds"
    else:
        when = f"At cron '{sec} {minute} {hour}'"
    parts = [when]
    if dom != "*":
        parts.append(f"on day {dom} of the month")
    if month != "*":
        parts.append(
            "in " + ", ".join(MONTHS[int(v)] if v.isdigit() else v for v in month.split(","))
        )
    if dow != "*":
        parts.append(_days(dow))
    return ", ".join(parts) + f" ({tz})"


def duration(seconds: float | None) -> str:
    """A short human duration: 850ms, 42s, 3m 05s, 2h 10m."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def span(start: int | None, end: int | None, now: int) -> float | None:
    """Seconds from ``start`` to ``end`` (or to ``now`` while running), from nanoseconds."""
    if start is None:
        return None
    return ((end or now) - start) / 1e9


def stamp(ns: int | None) -> str:
    """An ISO-8601 UTC time to the second (pages turn it into local time in the browser)."""
    if ns is None:
        return ""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def p95(values: list[float]) -> float | None:
    """The 95th percentile (nearest rank) of some durations; None with fewer than three."""
    if len(values) < 3:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered) + 0.5) - 1)]


def failures_in_a_row(recent: list[list[Any]]) -> int:
    """How many of the newest finished runs failed before the last success."""
    n = 0
    for state, *_ in recent:
        if state in ("queued", "running"):
            continue
        if state == "succeeded":
            break
        n += 1
    return n


_SGR = re.compile(r"\x1b\[([0-9;]*)m")
_OTHER_ESC = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLOURS = {
    30: "black",
    31: "red",
    32: "green",
    33: "yellow",
    34: "blue",
    35: "magenta",
    36: "cyan",
    37: "white",
}


def ansi_html(text: str) -> str:
    """Text with ANSI SGR colours as escaped HTML spans (other escapes are dropped)."""
    out: list[str] = []
    open_spans = 0
    pos = 0
    text = _OTHER_ESC.sub(lambda m: m.group(0) if m.group(0).endswith("m") else "", text)
    for match in _SGR.finditer(text):
        out.append(html.escape(text[pos : match.start()]))
        pos = match.end()
        codes = [int(c) for c in match.group(1).split(";") if c.isdigit()] or [0]
        classes = []
        for code in codes:
            if code == 0:
                out.append("</span>" * open_spans)
                open_spans = 0
            elif code == 1:
                classes.append("ansi-bold")
            elif code in COLOURS:
                classes.append("ansi-" + COLOURS[code])
            elif 90 <= code <= 97:
                classes.append("ansi-" + COLOURS[code - 60])
        if classes:
            out.append(f'<span class="{" ".join(classes)}">')
            open_spans += 1
    out.append(html.escape(text[pos:]))
    out.append("</span>" * open_spans)
    return "".join(out)
