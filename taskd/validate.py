"""Reading untrusted JSON documents field by field, collecting every problem with its path.

Each API family parses request bodies with a ``Doc``; all errors found are raised together as
one ``BadRequest`` whose ``details`` list names each field (Drove's ``validationErrors``,
Daggy's ``errors``), so a client fixes everything in one round trip.
"""

from __future__ import annotations

import math
from typing import Any

from taskd.errors import BadRequest

MISSING = object()
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what SQLite can store


class Problems:
    """Collects validation errors; ``check()`` raises them all at once."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, message: str) -> None:
        self.errors.append(message)

    def check(self, summary: str = "invalid request") -> None:
        if self.errors:
            first = self.errors[0] if len(self.errors) == 1 else f"{len(self.errors)} problems"
            raise BadRequest(f"{summary}: {first}", details=list(self.errors))


def type_name(value: Any) -> str:
    return {
        dict: "an object", list: "an array", str: "a string", bool: "a boolean",
        int: "an integer", float: "a number", type(None): "null",
    }.get(type(value), type(value).__name__)  # fmt: skip


class Doc:
    """A JSON object being read; every getter records a problem instead of raising."""

    def __init__(self, value: Any, path: str, problems: Problems) -> None:
        self.path = path
        self.problems = problems
        if isinstance(value, dict):
            self.value: dict[str, Any] = value
        else:
            self.value = {}
            problems.add(f"{path or 'the body'} must be an object, got {type_name(value)}")

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, required: bool) -> Any:
        value = self.value.get(key, MISSING)
        if value is MISSING or value is None:
            if required:
                self.problems.add(f"{self.where(key)} is required")
            return MISSING
        return value

    def str(self, key: str, default: Any = None, *, required: bool = False,
            nonempty: bool = False) -> Any:  # fmt: skip
        value = self._get(key, required)
        if value is MISSING:
            return default
        if not isinstance(value, str):
            self.problems.add(f"{self.where(key)} must be a string, got {type_name(value)}")
            return default
        if nonempty and not value.strip():
            self.problems.add(f"{self.where(key)} must not be empty")
        return value

    def bool(self, key: str, default: Any = False, *, required: bool = False) -> Any:
        value = self._get(key, required)
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            self.problems.add(f"{self.where(key)} must be true or false, got {type_name(value)}")
            return default
        return value

    def int(self, key: str, default: Any = None, *, required: bool = False,
            minimum: int | None = None, maximum: int | None = None,
            lenient: bool = False) -> Any:  # fmt: skip
        """An integer; with ``lenient`` a string of digits is accepted too (Daggy's "100")."""
        value = self._get(key, required)
        if value is MISSING:
            return default
        if lenient and isinstance(value, str):
            value = self._from_text(key, value, int, "an integer")
            if value is MISSING:
                return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.add(f"{self.where(key)} must be an integer, got {type_name(value)}")
            return default
        if not INT64_MIN <= value <= INT64_MAX:
            self.problems.add(f"{self.where(key)} must be a 64-bit integer, got {value}")
            return default
        return self._bounded(key, value, minimum, maximum, default)

    def num(self, key: str, default: Any = None, *, required: bool = False,
            minimum: float | None = None, maximum: float | None = None,
            lenient: bool = False) -> Any:  # fmt: skip
        value = self._get(key, required)
        if value is MISSING:
            return default
        if lenient and isinstance(value, str):
            value = self._from_text(key, value, float, "a number")
            if value is MISSING:
                return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problems.add(f"{self.where(key)} must be a number, got {type_name(value)}")
            return default
        if not math.isfinite(value):
            self.problems.add(f"{self.where(key)} must be a finite number")
            return default
        return self._bounded(key, value, minimum, maximum, default)

    def _from_text(self, key: str, value: str, cast: Any, kind: str) -> Any:
        """A number written as a string (Daggy's "100"), or MISSING after noting the problem."""
        try:
            return cast(value.strip())
        except ValueError:
            self.problems.add(f"{self.where(key)} must be {kind}, got {value!r}")
            return MISSING

    def _bounded(self, key: str, value: Any, minimum: Any, maximum: Any, default: Any) -> Any:
        if minimum is not None and value < minimum:
            self.problems.add(f"{self.where(key)} must be at least {minimum}, got {value}")
            return default
        if maximum is not None and value > maximum:
            self.problems.add(f"{self.where(key)} must be at most {maximum}, got {value}")
            return default
        return value

    def list(self, key: str, *, required: bool = False) -> list[Any]:
        value = self._get(key, required)
        if value is MISSING:
            return []
        if not isinstance(value, list):
            self.problems.add(f"{self.where(key)} must be an array, got {type_name(value)}")
            return []
        return value

    def strings(self, key: str, *, required: bool = False) -> list[str]:
        items = self.list(key, required=required)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                self.problems.add(f"{self.where(key)}[{i}] must be a string, got {type_name(item)}")
                return []
        return items

    def obj(self, key: str, *, required: bool = False) -> Doc | None:
        value = self._get(key, required)
        if value is MISSING:
            return None
        return Doc(value, self.where(key), self.problems)

    def union(self, key: str, kinds: tuple[str, ...], *, required: bool = False):
        """An object keyed by its type name: ``{"cron_schedule": {...}}`` -> (kind, Doc)."""
        doc = self.obj(key, required=required)
        if doc is None:
            return None, None
        keys = list(doc.value)
        if len(keys) != 1 or keys[0] not in kinds:
            self.problems.add(
                f"{self.where(key)} must have exactly one of {', '.join(kinds)}"
                f" (got {', '.join(keys) or 'nothing'})"
            )
            return None, None
        return keys[0], Doc(doc.value[keys[0]], doc.where(keys[0]), self.problems)

    def unknown(self, known: set[str] | frozenset[str]) -> None:
        for key in self.value:
            if key not in known:
                self.problems.add(f"{self.where(key)} is not a known field")
