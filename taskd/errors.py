"""One exception hierarchy; each error knows its HTTP status.

API families render these in their own envelope (see ``taskd.http.envelopes``).
"""

from __future__ import annotations

from typing import Any


class TaskdError(Exception):
    """Base of every error taskd raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: list[str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.extra = extra


class BadRequest(TaskdError):
    status = 400
    code = "bad_request"


class Unauthorized(TaskdError):
    status = 401
    code = "unauthorized"


class Forbidden(TaskdError):
    status = 403
    code = "forbidden"


class NotFound(TaskdError):
    status = 404
    code = "not_found"


class Conflict(TaskdError):
    status = 409
    code = "conflict"


class TooLarge(TaskdError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(TaskdError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(TaskdError):
    status = 429
    code = "rate_limited"


class StoreError(TaskdError):
    """The database failed (disk full, corruption, a schema the code does not know)."""

    status = 503
    code = "store_error"


class RunnerError(TaskdError):
    """A runner backend (Docker, the OS) failed to start or control a job."""

    status = 503
    code = "runner_error"


class Unavailable(TaskdError):
    """taskd cannot take this now (shutting down, a part of it down, at a limit that protects
    everyone such as open log streams); try again later."""

    status = 503
    code = "unavailable"
