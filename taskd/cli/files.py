"""Reading YAML/JSON files with positions, so every error names file, line and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskd.cli.client import CliError


def yaml_loader():
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")  # round-trip: keeps line/column of every node (and comments)
    yaml.allow_duplicate_keys = False
    return yaml


def load_documents(path: Path) -> list[Any]:
    """Every document of a YAML (1.2, so also JSON) file; a parse error names line:column."""
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    try:
        return [d for d in yaml_loader().load_all(text) if d is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise CliError(f"{where}: {problem}") from None
    except YAMLError as exc:
        raise CliError(f"{path}: {exc}") from None


def load_one(path: Path) -> Any:
    docs = load_documents(path)
    if len(docs) != 1:
        raise CliError(f"{path}: expected one document, found {len(docs)}")
    return plain(docs[0])


def plain(value: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists (for JSON bodies)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "real") and type(value).__name__ == "ScalarFloat":
        return float(value)
    if type(value).__name__ in ("ScalarInt", "HexInt", "OctalInt", "BinaryInt"):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if type(value).__name__ == "ScalarBoolean":
        return bool(value)
    return value


def position(node: Any, key: Any = None, value: bool = False) -> tuple[int, int] | None:
    """1-based (line, column) of ``node``, of its ``key``, or (``value``) of that key's value."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is not None:
            if not isinstance(node, dict):
                line, col = lc.item(key)
            else:
                line, col = lc.value(key) if value else lc.key(key)
        else:
            line, col = lc.line, lc.col
    except (KeyError, IndexError, TypeError):
        return None
    return line + 1, col + 1
