"""Named secrets: references from job environments, resolution at attempt start, masking.

A job refers to a secret as ``{"secret": "db"}`` where it would give a value. The job spec
keeps only the reference (``MARK + name``), so a secret's value is never stored with a run;
the engine swaps the value in when an attempt starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from taskd.validate import Problems, type_name

MARK = "\x00secret:"  # no real environment value can hold a NUL byte
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class MissingSecret(Exception):
    """A job refers to a secret that does not exist (the attempt fails with this reason)."""


def parse_env_value(raw: Any, where: str, problems: Problems) -> Any:
    """An environment value as given: a string, or ``{"secret": NAME}``."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict) and set(raw) == {"secret"} and isinstance(raw["secret"], str):
        if not NAME.fullmatch(raw["secret"]):
            problems.add(f"{where}.secret {raw['secret']!r} is not a valid secret name")
        return {"secret": raw["secret"]}
    problems.add(f'{where} must be a string or {{"secret": NAME}}, got {type_name(raw)}')
    return ""


def env_value(value: Any) -> str:
    """What a job spec keeps for a parsed value: the string, or the secret's reference."""
    if isinstance(value, dict):
        return MARK + value["secret"]
    return value


def shown(value: str) -> Any:
    """A job spec's value as an API reply shows it: references as ``{"secret": NAME}``."""
    if value.startswith(MARK):
        return {"secret": value[len(MARK) :]}
    return value


def refers(env: Iterable[tuple[str, str]]) -> bool:
    return any(v.startswith(MARK) for _, v in env)


def resolve(
    env: Iterable[tuple[str, str]], values: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """The environment with each reference replaced by its value (or MissingSecret)."""
    out = []
    for key, value in env:
        if value.startswith(MARK):
            name = value[len(MARK) :]
            if name not in values:
                raise MissingSecret(
                    f"the job's {key} refers to secret {name!r}, which does not exist"
                )
            value = values[name]
        out.append((key, value))
    return tuple(out)


class Masker:
    """Replaces every known secret value with as many ``*``; longest values first.

    The length is kept so byte offsets of captured output stay those of the real stream.
    """

    MIN = 4  # shorter values would mask ordinary words and digits

    def __init__(self) -> None:
        self.values: list[bytes] = []

    def update(self, values: Iterable[str]) -> None:
        chosen = {v.encode() for v in values if len(v) >= self.MIN}
        self.values = sorted(chosen, key=len, reverse=True)

    @property
    def longest(self) -> int:
        return len(self.values[0]) if self.values else 0

    def mask(self, data: bytes) -> bytes:
        for v in self.values:
            if v in data:
                data = data.replace(v, b"*" * len(v))
        return data

    def mask_text(self, text: str) -> str:
        if not self.values:
            return text
        return self.mask(text.encode()).decode(errors="replace")


MASKER = Masker()  # one per process: the values of the secrets of the server running here
