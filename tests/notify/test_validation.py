"""Bad notification and alert settings are refused with 400 naming the field."""

from __future__ import annotations

import pytest

from tests.processes.sundial import H, definition, shell


@pytest.mark.parametrize(
    ("notifications", "alerts", "fragment"),
    [
        ([{"email": {"email": "nobody"}}], None, "notifications[0].email.email"),
        ([{"sms": {"to": "1"}}], None, "notifications[0] must be an object with one key"),
        ([{"pagerduty": {}}], None, "service_key is required"),
        ([{"pagerduty": {"service_key": "k", "api_url": "ftp://x"}}], None, "api_url"),
        ([{"webhook": {"url": "mailto:x"}}], None, "must be an http(s) URL"),
        ([{"webhook": {"url": "http://x", "secret": "no spaces"}}], None, "must name a secret"),
        ([{"slack": {"url": {"secret": 3}}}], None, "notifications[0].slack.url"),
        ([{"email": {"email": "a@b", "notify_when": "sometimes"}}], None, "notify_when"),
        ([{"email": {"email": "a@b", "cc": "x"}}], None, "cc is not a known field"),
        ([], {"consecutive_failures": 0}, "alerts.consecutive_failures"),
        ([], {"dead_man_seconds": -1}, "alerts.dead_man_seconds"),
        ([], {"late_by": 3}, "alerts.late_by is not a known field"),
    ],
)
async def test_bad_settings_are_refused(make_client, notifications, alerts, fragment):
    client = await make_client()
    doc = definition("d", shell("a", "true"), notifications=notifications)
    if alerts is not None:
        doc["alerts"] = alerts
    resp = await client.put("/api/process_definitions/d", json=doc, headers=H)
    assert resp.status == 400
    assert fragment in str(await resp.json())


async def test_good_settings_are_stored_with_defaults(make_client):
    client = await make_client()
    doc = definition("d", shell("a", "true"), notifications=[
        {"email": {"email": "ops@example.com"}},
        {"pagerduty": {"service_key": {"secret": "pd"}}},
        {"webhook": {"url": "https://example.com/h", "secret": "sig"}},
    ], alerts={"late_start_seconds": 60, "longer_than_usual": True})  # fmt: skip
    resp = await client.put("/api/process_definitions/d", json=doc, headers=H)
    assert resp.status == 200, await resp.text()
    stored = await resp.json()
    assert stored["notifications"][0]["email"]["notify_when"] == "on_state_change_and_failures"
    assert stored["notifications"][1]["pagerduty"] == {
        "service_key": {"secret": "pd"}, "num_consecutive_failures": 1, "api_url": None}  # fmt: skip
    assert stored["alerts"] == {"late_start_seconds": 60, "longer_than_usual": True}
