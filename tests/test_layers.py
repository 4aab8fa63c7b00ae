"""The layout's rules, checked on the source: one core, four families that never meet.

- A family (``taskd/<family>/``) imports the core, never another family.
- The core (every other module but the composition root) imports no family at all.
- Nobody but the root imports the root (``taskd.app``, the CLI, the web UI) to run: it imports
  every family. Type hints under ``TYPE_CHECKING`` may name it.
- SQL is written only under ``taskd/store/``, in a family's ``store.py`` / ``store_*.py``, and
  in the web dashboard's own ``taskd/web/store.py`` (its reads across families).

Each rule is a function over (module name, source) so the tests below show it catches a
violation as well as that today's tree has none. Nothing is excepted.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "taskd"
FAMILIES = frozenset({"processes", "dagruns", "containertasks", "workqueue"})
# The composition root and the user-facing edges built on it may import every family.
ROOTS = ("taskd.app", "taskd.cli", "taskd.web", "taskd.__main__")
# Statements as SQL writes them (an HTTP "DELETE /path" or Drove's "CREATE" operation is not).
SQL_START = re.compile(
    r"\s*(SELECT\s+\S|INSERT\s+(OR\s+\w+\s+)?INTO\b|REPLACE\s+INTO\b|UPDATE\s+\w+\s+SET\b"
    r"|DELETE\s+FROM\b|CREATE\s+(UNIQUE\s+|TEMP\w*\s+)?(TABLE|INDEX|VIEW|TRIGGER)\b"
    r"|DROP\s+(TABLE|INDEX|VIEW|TRIGGER)\b|ALTER\s+TABLE\b|WITH\s+(RECURSIVE\s+)?\w+.*\bAS\s*\("
    r"|PRAGMA\s+\w|BEGIN\s+(IMMEDIATE|DEFERRED|EXCLUSIVE|TRANSACTION)\b|SAVEPOINT\s+\w"
    r"|RELEASE\s+\w|ROLLBACK\s+TO\b|VACUUM\b|ANALYZE\b|EXPLAIN\s|ATTACH\s)",
    re.DOTALL,
)
EXECUTE = frozenset({"execute", "executemany", "executescript"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, tuple[Path, str]]:
    return {module_name(p): (p, p.read_text()) for p in sorted(ROOT.rglob("*.py"))}


def family_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FAMILIES else None


def is_root(module: str) -> bool:
    return any(module == r or module.startswith(r + ".") for r in ROOTS)


def imports(module: str, source: str, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported module, line, only for type checking) for every taskd import in ``source``."""
    tree = ast.parse(source)
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    is_package = any(k.startswith(module + ".") for k in known) or _is_package(module)
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from taskd.x import y`` names the submodule taskd.x.y when there is one.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                     for a in node.names]  # fmt: skip
        for name in names:
            if name == "taskd" or name.startswith("taskd."):
                found.append((name, node.lineno, id(node) in typing_only))
    return found


def _is_package(module: str) -> bool:
    return (ROOT.parent / module.replace(".", "/") / "__init__.py").exists()


def import_violations(module: str, source: str, known: set[str]) -> list[str]:
    """What ``module`` imports that its layer may not."""
    if is_root(module):
        return []
    mine = family_of(module)
    out = []
    for target, line, typing_only in imports(module, source, known):
        theirs = family_of(target)
        if theirs is not None and theirs != mine:
            who = f"family {mine}" if mine else "the core"
            out.append(f"{module}:{line}: {who} imports family {theirs} ({target})")
        elif is_root(target) and not typing_only:
            out.append(f"{module}:{line}: imports the composition root ({target}) to run")
    return out


def may_speak_sql(module: str) -> bool:
    parts = module.split(".")
    if parts[:2] == ["taskd", "store"] or module == "taskd.web.store":
        return True
    last = parts[-1]
    return (
        family_of(module) is not None
        and len(parts) == 3
        and (last == "store" or last.startswith("store_"))
    )


def sql_violations(module: str, source: str) -> list[str]:
    """SQL text or cursor calls in a module that is not a store module."""
    if may_speak_sql(module):
        return []
    out = []
    for node in ast.walk(ast.parse(source)):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                text = first.value
        if text is not None and SQL_START.match(text):
            out.append(f"{module}:{node.lineno}: SQL outside the store: {text.strip()[:60]!r}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in EXECUTE
        ):
            out.append(f"{module}:{node.lineno}: runs SQL (.{node.func.attr}) outside the store")
    return out


# -- today's tree -----------------------------------------------------------------------------


def test_the_tree_has_the_four_families_and_the_core_packages():
    for package in (*FAMILIES, "store", "engine", "runners", "http"):
        assert (ROOT / package / "__init__.py").exists(), package
    assert (ROOT / "app.py").exists()


def test_families_import_only_the_core_and_the_core_imports_no_family():
    found = sources()
    known = set(found)
    problems = [v for name, (_, src) in found.items() for v in import_violations(name, src, known)]
    assert problems == []


def test_sql_is_only_in_store_modules():
    problems = [v for name, (_, src) in sources().items() for v in sql_violations(name, src)]
    assert problems == []


def test_each_family_exposes_setup_and_the_root_lists_it():
    from taskd.app import families

    listed = {m.__name__ for m in families()}
    for family in FAMILIES:
        module = __import__(f"taskd.{family}", fromlist=["setup"])
        assert callable(module.setup), family
        assert f"taskd.{family}" in listed, family


# -- the rules catch what they are for --------------------------------------------------------

KNOWN = {"taskd.processes", "taskd.processes.store", "taskd.dagruns", "taskd.dagruns.spec",
         "taskd.engine", "taskd.engine.engine", "taskd.app", "taskd.store"}  # fmt: skip


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("taskd.dagruns.routes", "from taskd.processes import store as dq\n"),
        ("taskd.dagruns.routes", "import taskd.processes.store\n"),
        ("taskd.dagruns.routes", "from taskd import processes\n"),
        ("taskd.workqueue.service", "def f():\n    from taskd.dagruns.spec import x\n"),
        ("taskd.engine.engine", "from taskd.dagruns import spec\n"),
        (
            "taskd.http.envelopes",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from taskd.processes import store\n",
        ),
        ("taskd.engine.graph", "from taskd.app import Services\n"),
        ("taskd.processes.routes", "from ..dagruns import spec\n"),
    ],
)
def test_forbidden_imports_are_caught(module, source):
    assert import_violations(module, source, KNOWN)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("taskd.dagruns.routes", "from taskd.dagruns import store as dq\n"),
        ("taskd.dagruns.routes", "from taskd.engine.engine import Engine\n"),
        ("taskd.app", "from taskd import processes, dagruns\n"),
        (
            "taskd.http.keys",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from taskd.app import Services\n",
        ),
    ],
)
def test_allowed_imports_pass(module, source):
    assert import_violations(module, source, KNOWN) == []


@pytest.mark.parametrize(
    "source",
    [
        'Q = "SELECT id FROM runs WHERE state = ?"\n',
        'def f(t):\n    return f"INSERT INTO {t} VALUES (?)"\n',
        "def f(db):\n    db.execute(q)\n",
        '  Q = (\n    " UPDATE runs SET x = 1"\n  )\n'.strip() + "\n",
    ],
)
def test_sql_outside_the_store_is_caught(source):
    assert sql_violations("taskd.engine.engine", source)
    assert sql_violations("taskd.dagruns.routes", source)
    assert sql_violations("taskd.dagruns.store", source) == []
    assert sql_violations("taskd.workqueue.store_projects", source) == []
    assert sql_violations("taskd.store.runs", source) == []
    assert sql_violations("taskd.web.store", source) == []
    assert sql_violations("taskd.web.views", source)


@pytest.mark.parametrize(
    "source",
    [
        '"""Select the next ready task."""\n',
        'OPS = {"DELETE /v1/dagrun/{runid}": 1}\n',
        'KINDS = ("CREATE", "KILL")\n',
    ],
)
def test_prose_and_routes_are_not_mistaken_for_sql(source):
    assert sql_violations("taskd.engine.engine", source) == []
