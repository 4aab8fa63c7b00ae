"""Schedule parsing and fire-time maths: pure functions, no I/O, no clock.

A process definition's schedule is a union object with exactly one key:

* ``{"cron_schedule": {...}}`` -- Quartz-style named fields ``minutes``, ``hours``,
  ``day_of_month``, ``month``, ``day_of_week`` (all required strings), plus the optional
  ``seconds`` (default ``"0"``) and ``timezone`` (IANA name, default ``"UTC"``). A field that
  is exactly ``?`` means ``*``. Field syntax and numbering are croniter's: day_of_week is
  0-7 with 0 and 7 = Sunday (names MON..SUN also work), and when both day fields are
  restricted a day matches if *either* matches.
* ``{"continuous_schedule": {"buffer_seconds": 30}}`` -- the next run starts
  ``buffer_seconds`` (default 0) after the previous run started.

DST rules for cron schedules (fields are matched against wall-clock time in the
schedule's timezone):

* a wall-clock time that does not exist (spring forward) does not fire that day; it is
  neither moved nor doubled;
* a wall-clock time that occurs twice (fall back) fires once, at its first occurrence;
  nothing fires during the repeated second pass (so an hourly job has a two-hour gap).

Hence fire instants are strictly increasing and every wall-clock slot fires at most once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from taskd.errors import BadRequest

CRON_FIELDS = ("seconds", "minutes", "hours", "day_of_month", "month", "day_of_week")
MISSED_POLICIES = ("collapse", "skip", "all")
DEFAULT_MISSED_POLICY = "collapse"
DEFAULT_GRACE = timedelta(seconds=60)
MAX_BUFFER = 366 * 86400  # a continuous schedule's longest buffer: a year

_CRON_DEFAULTS = {"seconds": "0", "timezone": "UTC"}
_MAX_FIELD_LEN = 100
# Bounds the walk over candidates that are skipped (DST gaps, the repeated hour): a
# per-second job skips at most a few thousand per transition, so this only trips on bugs.
_MAX_SKIPS = 200_000
# Cron fields carry no year, so an expression that fires once fires again in every
# 400-year Gregorian cycle; checking from any fixed date is as good as checking from now.
_VALIDATION_REFERENCE = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CronSchedule:
    """A cron schedule; fields are kept as the client gave them (``?`` included)."""

    seconds: str
    minutes: str
    hours: str
    day_of_month: str
    month: str
    day_of_week: str
    timezone: str

    @property
    def expression(self) -> str:
        """The six-field croniter expression (seconds first, ``?`` mapped to ``*``)."""
        return " ".join(_cron_field(f, getattr(self, f)) for f in CRON_FIELDS)


@dataclass(frozen=True)
class ContinuousSchedule:
    """Run again ``buffer_seconds`` after the previous run started."""

    buffer_seconds: float = 0.0


Schedule = CronSchedule | ContinuousSchedule


def _star(value: str) -> str:
    return "*" if value == "?" else value


def parse_timezone(name: object) -> ZoneInfo:
    """Return the ZoneInfo for an IANA name; BadRequest if it is not a known zone."""
    if not isinstance(name, str) or not name:
        raise BadRequest("timezone must be a non-empty IANA time zone name, e.g. 'Europe/Berlin'")
    # 'localtime' resolves to the host's zone file, which would make schedules host-dependent.
    if name == "localtime":
        raise BadRequest("timezone 'localtime' is not allowed; use an IANA name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise BadRequest(f"unknown timezone {name!r}") from exc


def parse_schedule(doc: dict | None) -> Schedule | None:
    """Validate a schedule union object; ``None`` means manual runs only.

    Raises BadRequest naming the offending key or field on any problem, including a cron
    expression that can never fire (e.g. 30 February).
    """
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise BadRequest("schedule must be an object or null")
    if len(doc) != 1:
        raise BadRequest(
            "schedule must have exactly one key: 'cron_schedule' or 'continuous_schedule'"
        )
    ((kind, body),) = doc.items()
    if kind == "cron_schedule":
        return _parse_cron(body)
    if kind == "continuous_schedule":
        return _parse_continuous(body)
    raise BadRequest(
        f"unknown schedule type {kind!r}; expected 'cron_schedule' or 'continuous_schedule'"
    )


def _parse_continuous(body: object) -> ContinuousSchedule:
    if not isinstance(body, dict):
        raise BadRequest("continuous_schedule must be an object")
    unknown = sorted(set(body) - {"buffer_seconds"})
    if unknown:
        raise BadRequest(f"continuous_schedule has unknown field(s): {', '.join(unknown)}")
    buffer = body.get("buffer_seconds", 0)
    # bool is an int subclass; true/false here is a client mistake, not 1/0.
    if isinstance(buffer, bool) or not isinstance(buffer, int | float):
        raise BadRequest("continuous_schedule.buffer_seconds must be a number")
    # Bounded: the next start is now + buffer, which must stay a date (and fit 64-bit ns).
    if not math.isfinite(buffer) or not 0 <= buffer <= MAX_BUFFER:
        raise BadRequest(
            f"continuous_schedule.buffer_seconds must be a number from 0 to {MAX_BUFFER}"
        )
    return ContinuousSchedule(buffer_seconds=float(buffer))


def _parse_cron(body: object) -> CronSchedule:
    if not isinstance(body, dict):
        raise BadRequest("cron_schedule must be an object")
    unknown = sorted(set(body) - set(CRON_FIELDS) - {"timezone"})
    if unknown:
        raise BadRequest(f"cron_schedule has unknown field(s): {', '.join(map(str, unknown))}")
    values: dict[str, str] = {}
    for field in (*CRON_FIELDS, "timezone"):
        if field not in body:
            if field not in _CRON_DEFAULTS:
                raise BadRequest(f"cron_schedule.{field} is required")
            values[field] = _CRON_DEFAULTS[field]
            continue
        value = body[field]
        if not isinstance(value, str):
            raise BadRequest(f"cron_schedule.{field} must be a string, got {type(value).__name__}")
        values[field] = value.strip()
    parse_timezone(values["timezone"])
    for position, field in enumerate(CRON_FIELDS):
        _check_field(field, position, values[field])
    sched = CronSchedule(**values)
    try:
        next_fire(sched, _VALIDATION_REFERENCE)
    except BadRequest as exc:
        raise BadRequest(f"cron_schedule: {exc.message}") from exc
    return sched


def _quartz_days(value: str) -> str:
    """Day-of-week numbers as Quartz counts them (1 = Sunday ... 7 = Saturday) for croniter.

    Sundial's cron fields are Quartz fields, so a client's "2-6" means Monday to Friday;
    croniter counts from 0 = Sunday. Names (MON-FRI) mean the same in both. Numbers after
    ``#`` (the nth weekday of the month) and ``/`` (a step) are not days and stay as they are.
    """

    def shift(match: re.Match[str]) -> str:
        day = int(match.group(0))
        if not 1 <= day <= 7:
            raise BadRequest(
                f"cron_schedule.day_of_week: {day} is not a day (1 = Sunday ... 7 = Saturday)"
            )
        return str(day - 1)

    return re.sub(r"(?<![#/\d])\d+", shift, value)


def _cron_field(field: str, value: str) -> str:
    value = _star(value)
    return _quartz_days(value) if field == "day_of_week" else value


def _check_field(field: str, position: int, value: str) -> None:
    """Validate one field alone so the error can name it."""
    if not value or len(value) > _MAX_FIELD_LEN or re.search(r"\s", value):
        raise BadRequest(
            f"cron_schedule.{field} must be a single non-empty cron field without spaces,"
            f" got {value!r}"
        )
    # croniter's R (random) and H (hashed) would make fire times non-deterministic or
    # depend on an id; no month or day name starts with R or H, so test each atom.
    if any(atom[:1].upper() in ("R", "H") for atom in re.split(r"[,/#-]", value)):
        raise BadRequest(f"cron_schedule.{field}: random (R) and hashed (H) values are not allowed")
    fields = ["*"] * len(CRON_FIELDS)
    fields[position] = _cron_field(field, value)
    try:
        croniter(" ".join(fields), _VALIDATION_REFERENCE, second_at_beginning=True)
    except Exception as exc:  # croniter raises a mix of its own, ValueError, KeyError...
        raise BadRequest(f"cron_schedule.{field} is not a valid cron field: {value!r}") from exc


def schedule_doc(s: Schedule) -> dict:
    """The normalised union object for a schedule (what GET returns).

    Cron: all seven fields always present, values as given (stripped; ``?`` kept, defaults
    filled in). Continuous: ``buffer_seconds`` as an int when it is whole.
    """
    if isinstance(s, CronSchedule):
        body = {f: getattr(s, f) for f in CRON_FIELDS}
        body["timezone"] = s.timezone
        return {"cron_schedule": body}
    buffer = float(s.buffer_seconds)
    return {
        "continuous_schedule": {"buffer_seconds": int(buffer) if buffer.is_integer() else buffer}
    }


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _iter_fires(s: CronSchedule, after: datetime) -> Iterator[datetime]:
    """Yield fire instants (aware UTC) strictly after ``after``, in increasing order.

    croniter walks naive wall-clock time (where it has no DST to get wrong); each candidate
    is then placed in the zone with fold=0 (first occurrence) and dropped if it does not
    exist. With fold=0 the wall->instant map is strictly increasing over existing times, so
    the output never repeats or goes backwards.
    """
    _require_aware("after", after)
    tz = parse_timezone(s.timezone)
    after_utc = after.astimezone(UTC)
    # Whole seconds: croniter's resolution. Every wall time <= this maps to an instant
    # <= after, so nothing due is missed by starting here.
    start = after_utc.astimezone(tz).replace(tzinfo=None, microsecond=0)
    try:
        it = croniter(s.expression, start, ret_type=datetime, second_at_beginning=True)
    except Exception as exc:  # only reachable for a CronSchedule built without parsing
        raise BadRequest(f"invalid cron expression {s.expression!r}") from exc
    skips = 0
    while True:
        try:
            wall: datetime = it.get_next()
        except Exception as exc:  # CroniterBadDateError: no match within croniter's horizon
            raise BadRequest(
                f"cron expression {s.expression!r} never fires (check day_of_month against month)"
            ) from exc
        local = wall.replace(tzinfo=tz)  # fold=0: the first of two ambiguous instants
        instant = local.astimezone(UTC)
        exists = instant.astimezone(tz).replace(tzinfo=None) == wall
        if exists and instant > after_utc:
            skips = 0
            yield instant
            continue
        # Skipped: a non-existent wall time, or one whose first occurrence precedes
        # ``after`` (``after`` is inside the repeated hour).
        skips += 1
        if skips > _MAX_SKIPS:
            raise BadRequest(f"cron expression {s.expression!r} never fires in {s.timezone}")


def next_fire(s: CronSchedule, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (aware in, aware UTC out)."""
    return next(_iter_fires(s, after))


def slots_between(
    s: CronSchedule, after: datetime, until: datetime, limit: int
) -> tuple[list[datetime], bool]:
    """Fire times in ``(after, until]``, oldest first, at most ``limit`` of them.

    Returns ``(slots, truncated)``; ``truncated`` is True when more slots exist in the
    range beyond the first ``limit``.
    """
    _require_aware("after", after)
    _require_aware("until", until)
    if limit < 0:
        raise ValueError("limit must be >= 0")
    slots: list[datetime] = []
    if until <= after:
        return slots, False
    for instant in _iter_fires(s, after):
        if instant > until:
            return slots, False
        if len(slots) == limit:
            return slots, True
        slots.append(instant)
    raise AssertionError("unreachable: _iter_fires is infinite")  # pragma: no cover


def next_continuous(s: ContinuousSchedule, last_start: datetime | None, now: datetime) -> datetime:
    """When a continuous process should next start.

    ``last_start + buffer_seconds``, which may be in the past (meaning: due now), or ``now``
    when the process has never run.
    """
    if last_start is None:
        return now
    return last_start + timedelta(seconds=s.buffer_seconds)


def validate_missed_policy(policy: object) -> str:
    """Return ``policy`` if it names a missed-slot policy, else raise BadRequest."""
    if policy not in MISSED_POLICIES:
        raise BadRequest(
            f"unknown missed-run policy {policy!r}; expected one of {', '.join(MISSED_POLICIES)}"
        )
    return policy  # type: ignore[return-value]


def plan_missed(
    slots: list[datetime],
    policy: str,
    limit: int,
    *,
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
) -> tuple[list[datetime], list[datetime]]:
    """Split slots that came due unfired into ``(to_fire, missed)``, both oldest first.

    A slot is *overdue* when it is older than ``now - grace``; a slot within the grace is
    simply due now. Policies:

    * ``collapse``: fire the newest slot (overdue or not); the rest are missed.
    * ``skip``: fire the newest slot only if it is not overdue; the rest are missed.
    * ``all``: fire the newest ``limit`` slots; older ones beyond that are missed.
    """
    validate_missed_policy(policy)
    if limit < 1:
        raise ValueError("limit must be >= 1")
    ordered = sorted(slots)
    if not ordered:
        return [], []
    if policy == "collapse":
        keep = 1
    elif policy == "skip":
        keep = 1 if ordered[-1] >= now - grace else 0
    else:
        keep = limit
    cut = max(len(ordered) - keep, 0)
    return ordered[cut:], ordered[:cut]
