"""The ``taskd`` command: ``serve`` and the client commands that drive a server over HTTP."""

from __future__ import annotations

from taskd.cli.root import main
from taskd.cli.serve import serve


def client_commands() -> None:
    """Import the client and day-2 commands (each module adds its commands to the group)."""
    from taskd.cli import (  # noqa: F401
        apply,
        commands_admin,
        commands_defs,
        commands_queue,
        commands_runs,
        commands_tasks,
    )
    from taskd.ops.commands import doctor, restore

    main.add_command(doctor)  # their logic lives in taskd.ops
    main.add_command(restore)


main.loader = client_commands

__all__ = ["main", "serve"]
