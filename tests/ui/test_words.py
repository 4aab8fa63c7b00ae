"""What the dashboard writes for people: schedules in words, durations, colours, figures."""

from __future__ import annotations

import pytest

from taskd.web import words
from taskd.web.familyviews import sparkline


def cron(**fields: str) -> dict:
    base = {
        "seconds": "0",
        "minutes": "*",
        "hours": "*",
        "day_of_month": "?",
        "month": "*",
        "day_of_week": "*",
        "timezone": "UTC",
    }
    return {"cron_schedule": {**base, **fields}}


@pytest.mark.parametrize(
    ("schedule", "said"),
    [
        (
            cron(minutes="30", hours="2", day_of_week="1-5", timezone="Europe/Berlin"),
            "At 02:30, Monday to Friday (Europe/Berlin)",
        ),
        (cron(minutes="0", hours="6", day_of_week="0,6"), "At 06:00, Sunday, Saturday (UTC)"),
        (cron(minutes="15"), "At minute 15 of every hour (UTC)"),
        (cron(minutes="*/5"), "Every 5 minutes (UTC)"),
        (
            cron(minutes="0", hours="3", day_of_month="1", month="1,7"),
            "At 03:00, on day 1 of the month, in January, July (UTC)",
        ),
        (
            {"continuous_schedule": {"buffer_seconds": 90}},
            "Continuously, 1m 30s after each run starts",
        ),
        (None, "Manual runs only"),
    ],
)
def test_schedules_in_words(schedule, said):
    assert words.schedule_words(schedule) == said


def test_ansi_colours_become_escaped_spans():
    html = words.ansi_html("\x1b[31mred <b>\x1b[0m plain \x1b[1;32mbold green\x1b[0m\x1b[2K")
    assert html == (
        '<span class="ansi-red">red &lt;b&gt;</span> plain '
        '<span class="ansi-bold ansi-green">bold green</span>'
    )


def test_usual_duration_and_failures_in_a_row():
    assert words.p95([1.0, 2.0]) is None  # too few runs to say what is usual
    assert words.p95([float(i) for i in range(1, 21)]) == 19.0
    recent = [["running"], ["failed"], ["killed"], ["succeeded"], ["failed"]]
    assert words.failures_in_a_row(recent) == 2
    assert words.duration(0.25) == "250ms" and words.duration(3725) == "1h 02m"


def test_the_queue_chart_scales_open_and_closed_tasks_over_time():
    lines = sparkline([[0, 10, 0, 0], [50, 5, 1, 4], [100, 0, 0, 10]], width=100, height=10)
    assert [line["label"] for line in lines] == ["open", "closed"]
    assert lines[0]["points"] == "0.0,0.0 50.0,4.0 100.0,10.0"
    assert lines[1]["points"] == "0.0,10.0 50.0,6.0 100.0,0.0"
    assert sparkline([[0, 1, 0, 0]]) == []  # one snapshot draws no line
