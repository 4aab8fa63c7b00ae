"""Which notifications a finished run sends, and which alerts it fires or resolves. Pure.

A definition's ``notifications`` are Sundial's (``email``, ``pagerduty``) plus taskd's own
``webhook`` and ``slack``; its ``alerts`` object switches on the checks no seed system had.
"""

from __future__ import annotations

import math
from typing import Any

from taskd.secrets import NAME as SECRET_NAME
from taskd.secrets import parse_env_value
from taskd.validate import Doc, Problems

NOTIFY_WHEN = ("always", "on_failure", "on_state_change", "on_state_change_and_failures", "never")
KINDS = ("email", "pagerduty", "webhook", "slack")
ALERT_KINDS = ("late_start", "dead_man", "consecutive_failures", "longer_than_usual")
USUAL_MIN_RUNS = 5  # "longer than usual" needs this many earlier successes to know usual
USUAL_WINDOW = 20  # ... and looks at this many


def parse_notifications(raw: list[Any], problems: Problems) -> list[dict[str, Any]]:
    """Validate and normalise a definition's ``notifications`` (defaults filled in)."""
    out = []
    for i, item in enumerate(raw):
        doc = Doc(item, f"notifications[{i}]", problems)
        kind, body = _union(doc, problems)
        if body is None:
            continue
        if kind == "email":
            body.unknown({"name", "email", "notify_when"})
            n = {"name": body.str("name", ""), "email": body.str("email", "", required=True,
                                                                  nonempty=True)}  # fmt: skip
            if n["email"] and "@" not in n["email"]:
                problems.add(f"{body.where('email')} is not an e-mail address")
        elif kind == "pagerduty":
            body.unknown({"service_key", "num_consecutive_failures", "api_url"})
            n = {
                "service_key": credential(body, "service_key"),
                "num_consecutive_failures": body.int("num_consecutive_failures", 1, minimum=1,
                                                     maximum=1000),
                "api_url": body.str("api_url", None),
            }  # fmt: skip
            if n["api_url"] and not n["api_url"].startswith(("http://", "https://")):
                problems.add(f"{body.where('api_url')} must be an http(s) URL")
        else:
            body.unknown({"url", "secret", "notify_when"} if kind == "webhook"
                         else {"url", "notify_when"})  # fmt: skip
            n = {"url": credential(body, "url")}
            if (
                isinstance(n["url"], str)
                and n["url"]
                and not n["url"].startswith(("http://", "https://"))
            ):
                problems.add(f"{body.where('url')} must be an http(s) URL")
            if kind == "webhook":
                n["secret"] = body.str("secret", None)  # the name of a secret: the signing key
                if n["secret"] is not None and not SECRET_NAME.fullmatch(n["secret"]):
                    problems.add(f"{body.where('secret')} must name a secret")
        if kind != "pagerduty":
            n["notify_when"] = body.str("notify_when", "on_state_change_and_failures")
            if n["notify_when"] not in NOTIFY_WHEN:
                problems.add(f"{body.where('notify_when')} must be one of {', '.join(NOTIFY_WHEN)}")
        out.append({kind: n})
    return out


def credential(body: Doc, key: str) -> Any:
    """A value that may be a credential (a routing key, a webhook URL with a token in it):
    a string, or ``{"secret": NAME}`` so that it is kept out of the definition."""
    raw = body.value.get(key)
    if isinstance(raw, dict):
        return parse_env_value(raw, body.where(key), body.problems)
    return body.str(key, "", required=True, nonempty=True)


def _union(doc: Doc, problems: Problems) -> tuple[str, Doc | None]:
    keys = list(doc.value)
    if len(keys) != 1 or keys[0] not in KINDS:
        problems.add(f"{doc.path} must be an object with one key of {', '.join(KINDS)}")
        return "", None
    return keys[0], Doc(doc.value[keys[0]], f"{doc.path}.{keys[0]}", problems)


def parse_alerts(raw: Any, problems: Problems) -> dict[str, Any]:
    """Validate a definition's ``alerts`` object; absent keys are off."""
    if raw is None:
        return {}
    doc = Doc(raw, "alerts", problems)
    doc.unknown({"late_start_seconds", "dead_man_seconds", "consecutive_failures",
                 "longer_than_usual"})  # fmt: skip
    out = {
        "late_start_seconds": doc.num("late_start_seconds", None, minimum=0.001),
        "dead_man_seconds": doc.num("dead_man_seconds", None, minimum=0.001),
        "consecutive_failures": doc.int("consecutive_failures", None, minimum=1, maximum=1000),
        "longer_than_usual": doc.bool("longer_than_usual", False),
    }
    return {k: v for k, v in out.items() if v not in (None, False)}


def wants(notify_when: str, previous: str | None, current: str) -> bool:
    """Sundial's intent: who hears of a run that ended ``current`` after ``previous``."""
    if notify_when == "never":
        return False
    if notify_when == "always":
        return True
    failed = current == "failed"
    changed = previous != current
    if notify_when == "on_failure":
        return failed
    if notify_when == "on_state_change":
        return changed
    return changed or failed  # on_state_change_and_failures


def streak(states: list[str]) -> int:
    """Failed runs at the head of a newest-first history."""
    n = 0
    for s in states:
        if s != "failed":
            break
        n += 1
    return n


def usual_limit(p95_seconds: float) -> float:
    """How long a run may take before it is "longer than usual": the p95 plus a margin (20%,
    at least a second), so that noise on short jobs does not make the alert flap."""
    return p95_seconds + max(1.0, 0.2 * p95_seconds)


def p95(durations: list[float]) -> float | None:
    """The 95th percentile (nearest rank) of earlier durations; None with too few."""
    if len(durations) < USUAL_MIN_RUNS:
        return None
    ordered = sorted(durations)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
