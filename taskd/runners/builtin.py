"""Loading the built-in runner backends, each on its own.

A backend whose import fails (a missing or broken dependency) is left out and reported at
start; it takes no other backend with it.
"""

from __future__ import annotations

import importlib

BUILTIN = ("docker", "local", "swarm")


def load_builtin_runners() -> dict[str, str]:
    """Import every built-in backend (they register themselves); name -> why one failed."""
    failed: dict[str, str] = {}
    for name in BUILTIN:
        try:
            importlib.import_module(f"taskd.runners.{name}")
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    return failed
