"""The ``taskd`` command: ``serve`` and the client commands that drive a server over HTTP."""

from __future__ import annotations

from taskd.cli import (  # noqa: F401  (each module adds its commands to the group)
    apply,
    commands_admin,
    commands_defs,
    commands_queue,
    commands_runs,
    commands_tasks,
)
from taskd.cli import serve as _serve_commands  # noqa: F401
from taskd.cli.root import main
from taskd.cli.serve import serve
from taskd.ops.commands import doctor, restore

main.add_command(doctor)  # day-2 commands; their logic lives in taskd.ops
main.add_command(restore)

__all__ = ["main", "serve"]
