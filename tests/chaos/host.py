"""What a chaos session left on the host: containers labelled with its instance, processes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

from tests.chaos.invariants import readonly


def containers(instance: str) -> list[str]:
    """Every container (any state) labelled with this taskd instance."""
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=taskd.instance={instance}"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return out.stdout.split()


def services(instance: str) -> list[str]:
    """Every swarm service labelled with this taskd instance (none without a swarm)."""
    out = subprocess.run(
        ["docker", "service", "ls", "-q", "--filter", f"label=taskd.instance={instance}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return out.stdout.split()


def describe_containers(instance: str, db: Path) -> list[str]:
    """Each container left: its state, and what the store says of its attempt."""
    described = []
    for cid in containers(instance):
        out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True,
                             timeout=30, check=False)  # fmt: skip
        try:
            info = json.loads(out.stdout)[0]
        except (ValueError, IndexError):
            described.append(f"{cid} (gone)")
            continue
        attempt = info["Config"]["Labels"].get("taskd.attempt")
        with contextlib.closing(readonly(db)) as conn:
            row = conn.execute(
                "SELECT id, task_id, number, state, reason, container_id, created_at,"
                " started_at, ended_at FROM attempts WHERE uuid = ?",
                (attempt,),
            ).fetchone()
        described.append(f"{cid} {info['State']['Status']} {info['Name']}"
                         f" created {info['Created']} attempt {attempt}: {row}")  # fmt: skip
    return described


def processes_with(*variables: str) -> list[int]:
    """Live processes whose environment holds one of ``variables`` ("NAME=value\\0")."""
    needles = [b"\0" + v.encode() for v in variables]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = b"\0" + fh.read()
        except OSError:  # gone meanwhile
            continue
        if any(needle in environ for needle in needles):
            found.append(int(entry))
    return found
