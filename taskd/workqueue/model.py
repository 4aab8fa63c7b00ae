"""The work queue's domain: values, request validation, wire shapes and pure rules. No I/O.

The service (``taskd.workqueue.service``) applies these inside store transactions; the HTTP handlers
(``taskd.workqueue.routes``) only read JSON and call the service.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from taskd.errors import BadRequest

NS = 1_000_000_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1
MAX_BULK = 10_000  # tasks in one bulk submit: keeps one transaction short for the writer
MAX_TEXT = 1000  # names, aliases, urls; recipes and secrets are bounded by the body limit


class Status(IntEnum):
    """A task's status, as stored and as the task_tracker API sends it."""

    NEW = 1
    FAILED = 2
    CLOSED = 3  # the seed deleted closed tasks; keeping them makes "closed once" checkable


class Result(IntEnum):
    """What a worker reports when it releases a task."""

    OK = 0  # done: closes the task (once enough workers agree, for verified tasks)
    FAIL = 1  # counts a retry; FAILED once retries reach max_retries
    SKIP = 2  # as if the worker never touched it: no retry counted


# Stored as the seed's logger levels.
LOG_LEVELS = {"error": 3, "warn": 4, "info": 5, "trace": 7}


# -- field validation -------------------------------------------------------------------------

_REQUIRED: Any = object()


def _get(body: Mapping[str, Any], name: str, default: Any, where: str) -> Any:
    if name in body and body[name] is not None:
        return body[name]
    if default is _REQUIRED:
        raise BadRequest(f"{where}{name} is required")
    return default


def int_field(
    body: Mapping[str, Any],
    name: str,
    default: Any = _REQUIRED,
    *,
    low: int = INT64_MIN,
    high: int = INT64_MAX,
    where: str = "",
) -> int:
    value = _get(body, name, default, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{where}{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise BadRequest(f"{where}{name} must be between {low} and {high}, got {value}")
    return value


def bool_field(body: Mapping[str, Any], name: str, default: Any = _REQUIRED) -> bool:
    value = _get(body, name, default, "")
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false, got {type(value).__name__}")
    return value


def str_field(
    body: Mapping[str, Any],
    name: str,
    default: Any = _REQUIRED,
    *,
    nonempty: bool = False,
    max_len: int | None = MAX_TEXT,
    where: str = "",
) -> str:
    value = _get(body, name, default, where)
    if not isinstance(value, str):
        raise BadRequest(f"{where}{name} must be a string, got {type(value).__name__}")
    if nonempty and not value:
        raise BadRequest(f"{where}{name} must not be empty")
    if max_len is not None and len(value) > max_len:
        raise BadRequest(f"{where}{name} must be at most {max_len} characters")
    return value


def rate_field(body: Mapping[str, Any], name: str, default: Any = _REQUIRED) -> float:
    value = _get(body, name, default, "")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or value > 1e9:
        raise BadRequest(f"{name} must be a number of requests a second, >= 0 (0 = unlimited)")
    return float(value)


def object_body(body: Any, what: str = "the request body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return body


# -- tasks ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewTask:
    """One validated submit request."""

    project: int
    priority: int
    max_retries: int
    max_assign_time: int
    verification_count: int
    hash64: int | None
    recipe: str

    @classmethod
    def parse(cls, body: Any, where: str = "") -> NewTask:
        body = object_body(body, where.rstrip(": ") or "the request body")
        hash64 = None
        for key in ("hash64", "hash_u64"):
            if body.get(key) is not None:
                value = int_field(body, key, where=where)
                if hash64 is not None and value != hash64:
                    raise BadRequest(f"{where}hash64 and hash_u64 differ; send one of them")
                hash64 = value
        unique = str_field(body, "unique_string", "", max_len=None, where=where)
        if hash64 and unique:
            raise BadRequest(f"{where}send hash64 or unique_string, not both")
        if unique:
            hash64 = unique_hash(unique)
        return cls(
            project=int_field(body, "project", low=1, where=where),
            priority=int_field(body, "priority", 0, where=where),
            max_retries=int_field(body, "max_retries", 0, low=0, high=INT32_MAX, where=where),
            max_assign_time=int_field(
                body, "max_assign_time", 0, low=0, high=INT32_MAX, where=where
            ),
            verification_count=int_field(
                body, "verification_count", 0, low=0, high=INT32_MAX, where=where
            ),
            hash64=hash64 or None,  # 0 means "no de-duplication", as in the seed
            recipe=str_field(body, "recipe", nonempty=True, max_len=None, where=where),
        )

    def row(self) -> tuple[int, int, int, int, int | None, str]:
        return (
            self.priority,
            self.max_retries,
            self.max_assign_time,
            self.verification_count,
            self.hash64,
            self.recipe,
        )


def parse_bulk(body: Any) -> tuple[int, list[NewTask]]:
    """``{"requests": [...]}``: all valid, one project, no hash twice. Returns (project, tasks)."""
    requests = object_body(body).get("requests")
    if not isinstance(requests, list) or not requests:
        raise BadRequest("requests must be a non-empty array of submit requests")
    if len(requests) > MAX_BULK:
        raise BadRequest(f"at most {MAX_BULK} tasks in one bulk submit, got {len(requests)}")
    tasks = [NewTask.parse(item, f"requests[{i}]: ") for i, item in enumerate(requests)]
    project = tasks[0].project
    seen: dict[int, int] = {}
    for i, task in enumerate(tasks):
        if task.project != project:
            raise BadRequest("All the tasks in a bulk submit must be of the same project")
        if task.hash64 is not None:
            if task.hash64 in seen:
                raise BadRequest(
                    f"requests[{i}] has the same hash as requests[{seen[task.hash64]}]; "
                    "nothing was stored"
                )
            seen[task.hash64] = i
    return project, tasks


# A batch release is one transaction, as a batch lease is: the same bound keeps it short.
MAX_RELEASE_BATCH = 100


@dataclass(frozen=True, slots=True)
class Release:
    """One validated release: the leased task and the worker's result for it."""

    task: int
    result: Result
    verification: int

    @classmethod
    def parse(cls, body: Any, where: str = "") -> Release:
        body = object_body(body, where.rstrip(": ") or "the request body")
        return cls(
            task=int_field(body, "task_id", low=1, where=where),
            result=Result(int_field(body, "result", low=0, high=2, where=where)),
            verification=int_field(body, "verification", 0, where=where),
        )


def parse_releases(body: Any) -> list[Release]:
    """``{"releases": [...]}``: 1 to MAX_RELEASE_BATCH valid releases, no task twice."""
    items = object_body(body).get("releases")
    if not isinstance(items, list) or not items:
        raise BadRequest("releases must be a non-empty array of {task_id, result} objects")
    if len(items) > MAX_RELEASE_BATCH:
        raise BadRequest(
            f"at most {MAX_RELEASE_BATCH} tasks in one bulk release, got {len(items)}; "
            "nothing was released"
        )
    releases = [Release.parse(item, f"releases[{i}]: ") for i, item in enumerate(items)]
    seen: dict[int, int] = {}
    for i, release in enumerate(releases):
        if release.task in seen:
            # Two results for one task cannot both apply; which one was meant is unknowable.
            raise BadRequest(
                f"releases[{i}] names task {release.task} again (as "
                f"releases[{seen[release.task]}]); nothing was released"
            )
        seen[release.task] = i
    return releases


def needed_verifications(verification_count: int) -> int:
    return max(1, verification_count)  # 0 counts as 1, as in the seed


def fails_for_good(retries: int, max_retries: int) -> bool:
    """After a failed release (``retries`` already counted): is the task now FAILED?

    ``max_retries`` is the number of failed releases a task may have: the task is FAILED when
    its retries reach it, so 0 and 1 both mean the first failure is final (the seed's rule).
    """
    return retries >= max_retries


# -- projects ---------------------------------------------------------------------------------


def parse_project(body: Any, *, partial: bool) -> dict[str, Any]:
    """Validated project fields. With ``partial`` (update) only the fields given are returned."""
    body = object_body(body)
    missing: Any = None if partial else _REQUIRED
    empty: Any = None if partial else ""
    spec = {
        "name": lambda: str_field(body, "name", missing, nonempty=True),
        "priority": lambda: int_field(body, "priority", None if partial else 0, low=0),
        "clone_url": lambda: str_field(body, "clone_url", empty),
        "git_repo": lambda: str_field(body, "git_repo", empty),
        "version": lambda: str_field(body, "version", empty),
        "motd": lambda: str_field(body, "motd", empty, max_len=None),
        "public": lambda: bool_field(body, "public", None if partial else False),
        "hidden": lambda: bool_field(body, "hidden", None if partial else False),
        "chain": lambda: int_field(body, "chain", None if partial else 0, low=0),
        "paused": lambda: bool_field(body, "paused", None if partial else False),
        "assign_rate": lambda: rate_field(body, "assign_rate", None if partial else 0.0),
        "submit_rate": lambda: rate_field(body, "submit_rate", None if partial else 0.0),
    }
    fields = {}
    for name, read in spec.items():
        if partial and body.get(name) is None:
            continue
        fields[name] = read()
    if "chain" in fields:
        fields["chain"] = fields["chain"] or None  # 0 = no chain
    if fields.get("public") and fields.get("hidden"):
        raise BadRequest("a project cannot be both public and hidden")
    return fields


# -- wire shapes ------------------------------------------------------------------------------


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def project_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "priority": row["priority"],
        "name": row["name"],
        "clone_url": row["clone_url"],
        "git_repo": row["git_repo"],
        "version": row["version"],
        "motd": row["motd"],
        "public": bool(row["public"]),
        "hidden": bool(row["hidden"]),
        "chain": row["chain"] or 0,
        "paused": bool(row["paused"]),
        "assign_rate": _number(row["assign_rate"]),
        "submit_rate": _number(row["submit_rate"]),
    }


def task_json(row: Mapping[str, Any], project: Mapping[str, Any]) -> dict[str, Any]:
    assign_time = row["assign_time"]
    return {
        "id": row["id"],
        "priority": row["priority"],
        "assignee": row["assignee"],
        "retries": row["retries"],
        "max_retries": row["max_retries"],
        "status": row["status"],
        "recipe": row["recipe"],
        "max_assign_time": row["max_assign_time"],
        "assign_time": assign_time // NS if assign_time is not None else None,
        "verification_count": row["verification_count"],
        "project": project_json(project),
    }


def worker_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created": row["created_at"] // NS,
        "alias": row["alias"],
        "paused": bool(row["paused"]),
    }


# -- rate limits ------------------------------------------------------------------------------


class TokenBucket:
    """task_tracker's limiter: ``rate`` tokens a second and a burst of **one**; rate 0 = unlimited.

    The original holds one ``golang.org/x/time/rate`` limiter (burst 1) per project and
    direction. A request is granted when a whole token has accrued since the last granted one;
    otherwise it is refused with the time until that token accrues, and the refused request
    costs nothing. A granted request is never refunded (the original's ``Cancel`` of a granted
    reservation restores nothing), not even when it found no task or stored nothing.

    A request for more than one token (a bulk submit) is granted once the bucket is full and
    leaves it in debt, so big requests are slowed to the rate instead of being refused forever
    as the original does.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.burst = 1.0
        self.tokens = self.burst
        self.stamp = now

    def take(self, n: int, now: float) -> float:
        """Take ``n`` tokens: 0.0 when granted, else the seconds to wait before asking again."""
        if self.rate <= 0:
            return 0.0
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        need = min(float(n), self.burst)
        # The tolerance absorbs float rounding, so waiting exactly the delay always succeeds.
        if self.tokens >= need - 1e-9:
            self.tokens -= n
            return 0.0
        return math.ceil((need - self.tokens) / self.rate * 1e6) / 1e6


# -- unique_string -> hash64 ------------------------------------------------------------------

_M64 = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M64


def siphash24(k0: int, k1: int, data: bytes) -> int:
    """SipHash-2-4 of ``data`` under the key (k0, k1); an unsigned 64-bit integer."""
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & _M64
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _M64
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _M64
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _M64
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    tail = len(data) % 8
    padded = data[: len(data) - tail] + data[len(data) - tail :] + b"\0" * (7 - tail)
    padded += bytes([len(data) & 0xFF])
    for (m,) in struct.iter_unpack("<Q", padded):
        v3 ^= m
        rounds(2)
        v0 ^= m
    v2 ^= 0xFF
    rounds(4)
    return v0 ^ v1 ^ v2 ^ v3


def unique_hash(text: str) -> int:
    """The seed's hash of a unique_string: SipHash-2-4, key (1, 2), as a signed int64."""
    value = siphash24(1, 2, text.encode())
    return value - (1 << 64) if value > INT64_MAX else value
