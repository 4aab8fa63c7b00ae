"""Schedule parsing and fire-time maths: literal datetimes only, nothing reads the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from taskd.errors import BadRequest
from taskd.processes.schedule import (
    ContinuousSchedule,
    CronSchedule,
    next_continuous,
    next_fire,
    parse_schedule,
    parse_timezone,
    plan_missed,
    schedule_doc,
    slots_between,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def cron(**fields: str) -> CronSchedule:
    body = {"minutes": "0", "hours": "*", "day_of_month": "*", "month": "*", "day_of_week": "?"}
    body.update(fields)
    sched = parse_schedule({"cron_schedule": body})
    assert isinstance(sched, CronSchedule)
    return sched


def fires(sched: CronSchedule, after: datetime, n: int) -> list[datetime]:
    out = []
    for _ in range(n):
        after = next_fire(sched, after)
        out.append(after)
    return out


# --- parsing and the GET document -------------------------------------------------------


def test_none_means_manual_only():
    assert parse_schedule(None) is None


def test_cron_defaults_and_round_trip():
    sched = cron(minutes="*/5")
    assert sched == CronSchedule("0", "*/5", "*", "*", "*", "?", "UTC")
    doc = schedule_doc(sched)
    assert doc == {
        "cron_schedule": {
            "seconds": "0",
            "minutes": "*/5",
            "hours": "*",
            "day_of_month": "*",
            "month": "*",
            "day_of_week": "?",
            "timezone": "UTC",
        }
    }
    assert parse_schedule(doc) == sched


def test_continuous_parse_default_and_doc():
    assert parse_schedule({"continuous_schedule": {}}) == ContinuousSchedule(0.0)
    sched = parse_schedule({"continuous_schedule": {"buffer_seconds": 30}})
    assert sched == ContinuousSchedule(30.0)
    assert schedule_doc(sched) == {"continuous_schedule": {"buffer_seconds": 30}}
    assert schedule_doc(ContinuousSchedule(1.5)) == {"continuous_schedule": {"buffer_seconds": 1.5}}


def test_parse_timezone():
    assert parse_timezone("Europe/Berlin").key == "Europe/Berlin"
    for bad in ("Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "localtime", None):
        with pytest.raises(BadRequest, match="timezone"):
            parse_timezone(bad)


BASE = {"minutes": "0", "hours": "*", "day_of_month": "*", "month": "*", "day_of_week": "?"}


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ("cron", "must be an object"),
        ({}, "exactly one key"),
        ({"cron_schedule": BASE, "continuous_schedule": {}}, "exactly one key"),
        ({"rate_schedule": {"minutes": 5}}, "unknown schedule type 'rate_schedule'"),
        ({"cron_schedule": "*/5 * * * *"}, "cron_schedule must be an object"),
        ({"cron_schedule": {**BASE, "minutes": "61"}}, r"cron_schedule\.minutes"),
        ({"cron_schedule": {**BASE, "minutes": "0 0"}}, r"cron_schedule\.minutes .*spaces"),
        ({"cron_schedule": {**BASE, "hours": "0 0 * * * *"}}, r"cron_schedule\.hours"),
        ({"cron_schedule": {**BASE, "hours": "*/0"}}, r"cron_schedule\.hours"),
        ({"cron_schedule": {**BASE, "hours": "24"}}, r"cron_schedule\.hours"),
        ({"cron_schedule": {**BASE, "day_of_week": "8"}}, r"cron_schedule\.day_of_week"),
        ({"cron_schedule": {**BASE, "day_of_week": "FUNDAY"}}, r"cron_schedule\.day_of_week"),
        ({"cron_schedule": {**BASE, "month": "13"}}, r"cron_schedule\.month"),
        ({"cron_schedule": {**BASE, "day_of_month": "0"}}, r"cron_schedule\.day_of_month"),
        ({"cron_schedule": {**BASE, "seconds": "60"}}, r"cron_schedule\.seconds"),
        ({"cron_schedule": {**BASE, "minutes": ""}}, r"cron_schedule\.minutes"),
        ({"cron_schedule": {**BASE, "minutes": "R"}}, r"cron_schedule\.minutes.*random"),
        ({"cron_schedule": {**BASE, "minutes": "H/5"}}, r"cron_schedule\.minutes.*hashed"),
        ({"cron_schedule": {**BASE, "minutes": 5}}, r"cron_schedule\.minutes must be a string"),
        ({"cron_schedule": {**BASE, "seconds": 0}}, r"cron_schedule\.seconds must be a string"),
        ({"cron_schedule": {**BASE, "timezone": 1}}, "timezone"),
        ({"cron_schedule": {**BASE, "timezone": "Mars/Olympus"}}, "unknown timezone"),
        ({"cron_schedule": {**BASE, "year": "2030"}}, "unknown field.*year"),
        ({"cron_schedule": {k: v for k, v in BASE.items() if k != "hours"}}, "hours is required"),
        (
            {"cron_schedule": {**BASE, "day_of_month": "30", "month": "2"}},
            "never fires",
        ),
        (
            {"cron_schedule": {**BASE, "day_of_month": "31", "month": "APR,JUN"}},
            "never fires",
        ),
        ({"continuous_schedule": {"buffer_seconds": -1}}, "buffer_seconds"),
        ({"continuous_schedule": {"buffer_seconds": "30"}}, "buffer_seconds must be a number"),
        ({"continuous_schedule": {"buffer_seconds": True}}, "buffer_seconds must be a number"),
        ({"continuous_schedule": {"buffer_seconds": float("nan")}}, "buffer_seconds"),
        ({"continuous_schedule": {"buffer_seconds": float("inf")}}, "buffer_seconds"),
        ({"continuous_schedule": {"buffer": 3}}, "unknown field.*buffer"),
        ({"continuous_schedule": 30}, "continuous_schedule must be an object"),
    ],
)
def test_invalid_schedules_raise_bad_request(doc, match):
    with pytest.raises(BadRequest, match=match):
        parse_schedule(doc)


# --- cron fire times --------------------------------------------------------------------


def test_every_five_minutes():
    sched = cron(minutes="*/5")
    assert fires(sched, utc(2026, 1, 1, 10, 2), 3) == [
        utc(2026, 1, 1, 10, 5),
        utc(2026, 1, 1, 10, 10),
        utc(2026, 1, 1, 10, 15),
    ]


def test_next_fire_is_strictly_after():
    sched = cron(minutes="*/5")
    assert next_fire(sched, utc(2026, 1, 1, 10, 5)) == utc(2026, 1, 1, 10, 10)
    assert next_fire(sched, utc(2026, 1, 1, 10, 4, 59, 999999)) == utc(2026, 1, 1, 10, 5)
    assert next_fire(sched, utc(2026, 1, 1, 10, 5, 0, 1)) == utc(2026, 1, 1, 10, 10)


def test_result_is_utc_for_any_aware_input():
    sched = cron(minutes="*/5")
    after = datetime(2026, 1, 1, 11, 2, tzinfo=parse_timezone("Europe/Berlin"))
    result = next_fire(sched, after)
    assert result == utc(2026, 1, 1, 10, 5)
    assert result.tzinfo is UTC


def test_naive_datetimes_are_rejected():
    sched = cron()
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(sched, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        slots_between(sched, datetime(2026, 1, 1), utc(2026, 1, 2), 10)


def test_specific_hours_and_days():
    sched = cron(minutes="30", hours="9,17", day_of_month="1,15")
    assert fires(sched, utc(2026, 1, 1), 5) == [
        utc(2026, 1, 1, 9, 30),
        utc(2026, 1, 1, 17, 30),
        utc(2026, 1, 15, 9, 30),
        utc(2026, 1, 15, 17, 30),
        utc(2026, 2, 1, 9, 30),
    ]


def test_day_of_week_with_question_mark_day_of_month():
    # 2026-01-01 is a Thursday.
    sched = cron(hours="8", day_of_month="?", day_of_week="MON-FRI")
    assert fires(sched, utc(2026, 1, 1, 9), 3) == [
        utc(2026, 1, 2, 8),
        utc(2026, 1, 5, 8),
        utc(2026, 1, 6, 8),
    ]
    # Numeric day_of_week counts as Quartz does (Sundial's cron): 1 = Sunday ... 7 = Saturday.
    assert next_fire(cron(hours="8", day_of_week="1"), utc(2026, 1, 1)) == utc(2026, 1, 4, 8)
    assert next_fire(cron(hours="8", day_of_week="7"), utc(2026, 1, 1)) == utc(2026, 1, 3, 8)
    weekdays = cron(hours="8", day_of_month="?", day_of_week="2-6")  # Monday to Friday
    assert fires(weekdays, utc(2026, 1, 1, 9), 3) == fires(sched, utc(2026, 1, 1, 9), 3)
    # the 2nd Monday (2#2): '#' counts occurrences, not days
    assert next_fire(cron(hours="8", day_of_month="?", day_of_week="2#2"), utc(2026, 1, 1)) == utc(
        2026, 1, 12, 8
    )
    with pytest.raises(BadRequest, match="not a day"):
        parse_schedule({"cron_schedule": {**BASE, "day_of_week": "0"}})


def test_day_of_month_with_question_mark_day_of_week():
    sched = cron(hours="6", day_of_month="15", day_of_week="?")
    assert fires(sched, utc(2026, 1, 20), 2) == [utc(2026, 2, 15, 6), utc(2026, 3, 15, 6)]


@pytest.mark.parametrize("month", ["1,7", "JAN,JUL", "jan,jul"])
def test_month_names_and_numbers(month):
    sched = cron(hours="0", day_of_month="1", month=month)
    assert fires(sched, utc(2026, 2, 1), 3) == [
        utc(2026, 7, 1),
        utc(2027, 1, 1),
        utc(2027, 7, 1),
    ]


def test_leap_day_only_schedule_is_valid():
    sched = cron(hours="0", day_of_month="29", month="2")
    assert next_fire(sched, utc(2026, 1, 1)) == utc(2028, 2, 29)


def test_per_second_expression_fires_consecutive_seconds():
    sched = cron(seconds="*/1", minutes="*")
    assert fires(sched, utc(2026, 1, 1, 10, 59, 58), 4) == [
        utc(2026, 1, 1, 10, 59, 59),
        utc(2026, 1, 1, 11, 0, 0),
        utc(2026, 1, 1, 11, 0, 1),
        utc(2026, 1, 1, 11, 0, 2),
    ]
    # A sub-second ``after`` still yields the next whole second.
    after = datetime(2026, 1, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert next_fire(sched, after) == utc(2026, 1, 1, 10, 0, 1)


def test_new_york_nine_am_in_winter_and_summer():
    sched = cron(hours="9", timezone="America/New_York")
    assert next_fire(sched, utc(2026, 1, 15)) == utc(2026, 1, 15, 14)
    assert next_fire(sched, utc(2026, 7, 15)) == utc(2026, 7, 15, 13)


# --- DST in Europe/Berlin: spring forward 2026-03-29 02:00 CET -> 03:00 CEST ------------


def test_spring_forward_nonexistent_daily_time_does_not_fire():
    sched = cron(minutes="30", hours="2", timezone="Europe/Berlin")
    assert fires(sched, utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST; 2026-03-29 02:30 does not exist
        utc(2026, 3, 31, 0, 30),
    ]


def test_spring_forward_hourly_skips_missing_hour_without_doubling():
    sched = cron(timezone="Europe/Berlin")
    slots, truncated = slots_between(sched, utc(2026, 3, 28, 22, 30), utc(2026, 3, 29, 2), 100)
    assert not truncated
    # Local 00:00, 01:00 CET then 03:00, 04:00 CEST: wall slot 02:00 never happens.
    assert slots == [
        utc(2026, 3, 28, 23),
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 2),
    ]


def test_spring_forward_per_second_jumps_the_gap():
    sched = cron(seconds="*/1", minutes="*", timezone="Europe/Berlin")
    # 00:59:59 UTC is 01:59:59 CET; the next second is 03:00:00 CEST.
    assert next_fire(sched, utc(2026, 3, 29, 0, 59, 58)) == utc(2026, 3, 29, 0, 59, 59)
    assert next_fire(sched, utc(2026, 3, 29, 0, 59, 59)) == utc(2026, 3, 29, 1, 0, 0)


def test_interval_hours_across_spring_forward():
    sched = cron(hours="*/2", timezone="Europe/Berlin")
    slots, _ = slots_between(sched, utc(2026, 3, 28, 22), utc(2026, 3, 29, 4), 100)
    # Wall 00:00, 04:00, 06:00; 02:00 does not exist.
    assert slots == [utc(2026, 3, 28, 23), utc(2026, 3, 29, 2), utc(2026, 3, 29, 4)]


# --- DST in Europe/Berlin: fall back 2026-10-25 03:00 CEST -> 02:00 CET -----------------


def test_fall_back_repeated_daily_time_fires_once_at_first_occurrence():
    sched = cron(minutes="30", hours="2", timezone="Europe/Berlin")
    assert fires(sched, utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first 02:30
        utc(2026, 10, 26, 1, 30),  # 02:30 CET the next day; never 01:30 UTC on the 25th
    ]
    # Asking from inside the repeated hour (02:10 CET, second pass) does not refire it.
    assert next_fire(sched, utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 26, 1, 30)


def test_fall_back_every_fifteen_minutes_no_duplicates_never_backwards():
    sched = cron(minutes="*/15", timezone="Europe/Berlin")
    slots, truncated = slots_between(sched, utc(2026, 10, 24, 22, 59), utc(2026, 10, 25, 3), 100)
    assert not truncated
    assert len(slots) == len(set(slots))
    assert all(a < b for a, b in pairwise(slots))
    # Wall 01:00..02:45 CEST (23:00..00:45 UTC), nothing during the repeated 02:xx CET,
    # then 03:00 CET onward (02:00 UTC).
    assert slots[:8] == [utc(2026, 10, 24, 23) + timedelta(minutes=15 * i) for i in range(8)]
    assert slots[8:] == [utc(2026, 10, 25, 2) + timedelta(minutes=15 * i) for i in range(5)]
    # Stepping with next_fire from each result gives the same sequence.
    assert fires(sched, utc(2026, 10, 24, 22, 59), 13) == slots


def test_fall_back_per_second_from_inside_repeated_hour():
    sched = cron(seconds="*/1", minutes="*", timezone="Europe/Berlin")
    # 01:30 UTC is 02:30 CET (second pass): the whole repeated hour already fired.
    assert next_fire(sched, utc(2026, 10, 25, 1, 30)) == utc(2026, 10, 25, 2, 0, 0)
    assert next_fire(sched, utc(2026, 10, 25, 0, 59, 59)) == utc(2026, 10, 25, 2, 0, 0)


# --- slots_between ----------------------------------------------------------------------


def test_slots_between_counts_and_truncation():
    sched = cron(minutes="*/5")
    after, until = utc(2026, 1, 1, 9), utc(2026, 1, 1, 12)
    slots, truncated = slots_between(sched, after, until, 100)
    assert (len(slots), truncated) == (36, False)
    assert slots[0] == utc(2026, 1, 1, 9, 5) and slots[-1] == until  # (after, until]

    slots, truncated = slots_between(sched, after, until, 36)
    assert (len(slots), truncated) == (36, False)

    slots, truncated = slots_between(sched, after, until, 10)
    assert truncated and slots == [
        utc(2026, 1, 1, 9, 5) + timedelta(minutes=5 * i) for i in range(10)
    ]

    assert slots_between(sched, after, until, 0) == ([], True)
    assert slots_between(sched, until, after, 10) == ([], False)
    assert slots_between(sched, utc(2026, 1, 1, 9, 1), utc(2026, 1, 1, 9, 4), 10) == ([], False)


def test_slots_between_per_second():
    sched = cron(seconds="*/1", minutes="*")
    slots, truncated = slots_between(sched, utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 10), 100)
    assert not truncated
    assert slots == [utc(2026, 1, 1) + timedelta(seconds=i) for i in range(1, 11)]


# --- continuous -------------------------------------------------------------------------


def test_next_continuous():
    sched = ContinuousSchedule(buffer_seconds=30)
    now = utc(2026, 1, 1, 12)
    assert next_continuous(sched, None, now) == now
    assert next_continuous(sched, utc(2026, 1, 1, 11, 59), now) == utc(2026, 1, 1, 11, 59, 30)
    # A past result means due now; the caller decides.
    assert next_continuous(sched, utc(2026, 1, 1, 10), now) == utc(2026, 1, 1, 10, 0, 30)
    assert next_continuous(ContinuousSchedule(), utc(2026, 1, 1, 10), now) == utc(2026, 1, 1, 10)


# --- plan_missed ------------------------------------------------------------------------

NOW = utc(2026, 1, 1, 12)
OLD1, OLD2, FRESH = utc(2026, 1, 1, 11), utc(2026, 1, 1, 11, 30), utc(2026, 1, 1, 11, 59, 30)


def test_plan_missed_collapse_fires_newest_only():
    assert plan_missed([OLD1, OLD2, FRESH], "collapse", 10, now=NOW) == ([FRESH], [OLD1, OLD2])
    assert plan_missed([OLD1, OLD2], "collapse", 10, now=NOW) == ([OLD2], [OLD1])
    assert plan_missed([], "collapse", 10, now=NOW) == ([], [])


def test_plan_missed_skip_fires_only_a_slot_within_grace():
    assert plan_missed([OLD1, OLD2, FRESH], "skip", 10, now=NOW) == ([FRESH], [OLD1, OLD2])
    assert plan_missed([OLD1, OLD2], "skip", 10, now=NOW) == ([], [OLD1, OLD2])
    assert plan_missed([FRESH], "skip", 10, now=NOW) == ([FRESH], [])
    # The grace is explicit: with a tighter grace the 30-second-old slot is overdue.
    assert plan_missed([FRESH], "skip", 10, now=NOW, grace=timedelta(seconds=10)) == (
        [],
        [FRESH],
    )


def test_plan_missed_all_fires_newest_up_to_limit():
    assert plan_missed([OLD1, OLD2, FRESH], "all", 10, now=NOW) == ([OLD1, OLD2, FRESH], [])
    assert plan_missed([OLD1, OLD2, FRESH], "all", 2, now=NOW) == ([OLD2, FRESH], [OLD1])
    # Input order does not matter; output is oldest first.
    assert plan_missed([FRESH, OLD1, OLD2], "all", 2, now=NOW) == ([OLD2, FRESH], [OLD1])


def test_plan_missed_rejects_unknown_policy():
    with pytest.raises(BadRequest, match="unknown missed-run policy 'latest'"):
        plan_missed([OLD1], "latest", 10, now=NOW)
