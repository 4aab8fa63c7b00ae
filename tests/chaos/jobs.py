"""What the chaos workload asks taskd to run: definitions, DAGs, container tasks.

Local jobs write into a timeline file when they really start and end, so the checks can tell
whether a job outlived what the store says of its attempt. Some leave children behind that
escaped their process group (``setsid``, a double fork) and tick into the timeline until they
are killed: none may tick after taskd recorded its attempt's end. Every job carries a marker
in its environment (inherited by its children, visible in /proc even inside containers), so
whatever is left running afterwards can be found.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE = "taskd-test:latest"


def _swarm() -> bool:
    """Whether swarm jobs join the workload: the engine is a swarm manager (or CI says it is)."""
    if os.environ.get("TASKD_REQUIRE_SWARM") == "1":
        return True
    try:
        out = subprocess.run(["docker", "info", "--format", "{{.Swarm.ControlAvailable}}"],
                             capture_output=True, text=True, timeout=20, check=False)  # fmt: skip
    except OSError:
        return False
    return out.stdout.strip() == "true"


SWARM = _swarm()
DEFINITIONS = ("chaos-shell", "chaos-docker", "chaos-term") + (("chaos-swarm",) if SWARM else ())
TRIGGERED = ("chaos-shell", "chaos-docker") + (("chaos-swarm",) if SWARM else ())


@dataclass(frozen=True)
class Jobs:
    """Request bodies of every family, for one chaos session."""

    marker: str
    timeline: Path

    def script(self, seconds: float, *, fail_first: bool = False, kids: bool = False) -> str:
        """A local job that writes when it really started and ended into the timeline."""
        line = 'echo "$TASKD_TASK_ID $$ $(date +%s%N)'
        text = f'{line} start" >> {self.timeline}; sleep {seconds}; {line} end" >> {self.timeline}'
        if fail_first:
            text += '; [ "$TASKD_ATTEMPT" != 1 ]'
        if kids:
            text = self.kids() + text
        return text

    def kids(self) -> str:
        """Start two tickers that left the job's group: one setsid, one double-forked (which
        keeps the job's stdout and stderr open)."""
        tick = f'while :; do echo "$TASKD_TASK_ID $$ $(date +%s%N) tick" >> {self.timeline}; '
        tick = shlex.quote(tick + "sleep 0.1; done")
        double = shlex.quote(f"setsid sh -c {tick} &")
        return f"setsid sh -c {tick} >/dev/null 2>&1 & sh -c {double} & "

    def sundial_env(self) -> list[dict[str, str]]:
        return [{"variable_name": "CHAOS_MARKER", "value": self.marker}]

    def definition(self, name: str) -> dict[str, Any]:
        def cron(seconds: str) -> dict[str, Any]:
            return {
                "cron_schedule": {
                    "seconds": seconds,
                    "minutes": "*",
                    "hours": "*",
                    "day_of_month": "*",
                    "month": "*",
                    "day_of_week": "?",
                }
            }

        def shell(task: str, script: str, deps: tuple[str, ...] = (), **extra: Any) -> dict:
            return {
                "task_definition_name": task,
                "dependencies": [
                    {"task_definition_name": d, "success_required": True} for d in deps
                ],
                "executable": {
                    "shell_script_command": {
                        "script": script,
                        "environment_variables": self.sundial_env(),
                    }
                },
                "max_attempts": extra.pop("max_attempts", 2),
                "backoff_base_seconds": 0,
                **extra,
            }

        if name == "chaos-shell":
            tasks = [
                shell("first", self.script(0.2)),
                shell("second", self.script(0.3, fail_first=True), ("first",)),
                shell("kids", self.script(0.6, fail_first=True, kids=True)),
            ]
            return {
                "process_definition_name": name,
                "schedule": cron("*/1"),
                "overlap_action": "allow",
                "task_definitions": tasks,
            }
        if name == "chaos-term":
            long = self.script(4, kids=True)
            tasks = [shell("long", long, max_attempts=1, max_runtime_seconds=20)]
            return {
                "process_definition_name": name,
                "schedule": cron("*/3"),
                "overlap_action": "terminate",
                "task_definitions": tasks,
            }
        repo, _, tag = IMAGE.partition(":")
        docker = {
            "task_definition_name": "boxed",
            "dependencies": [],
            "executable": {
                "docker_image_command": {
                    "image": repo,
                    "tag": tag,
                    "command": ["sh", "-c", "sleep 1; echo boxed"],
                    "memory": 32,
                    "cpu": 0.2,
                    "environment_variables": self.sundial_env(),
                }
            },
            "max_attempts": 2,
            "backoff_base_seconds": 0,
        }
        if name == "chaos-swarm":  # the same job, as a swarm service
            docker["executable"]["docker_image_command"]["runner"] = "swarm"
        return {
            "process_definition_name": name,
            "schedule": cron("*/2"),
            "overlap_action": "wait",
            "task_definitions": [docker],
        }

    def dag(self, tag: str, n: int) -> dict[str, Any]:
        env = [f"CHAOS_MARKER={self.marker}"]

        def job(seconds: float, *, fail_first: bool = False, more: tuple[str, ...] = ()) -> dict:
            command = ["/bin/sh", "-c", self.script(seconds, fail_first=fail_first)]
            return {"command": command, "environment": [*env, *more]}

        tasks: dict[str, Any] = {
            "head": {"job": job(0.2), "children": ["work"]},
            "work": {
                "job": job(0.3, fail_first=n % 3 == 0, more=("ITEM={{ITEM}}",)),
                "maxRetries": 1,
                "children": ["tail"],
            },
            "tail": {"job": job(0.1)},
        }
        if n % 3 == 1:  # a generator: what it prints becomes tasks between it and "tail"
            made = {
                "made": {"job": {"command": ["/bin/sh", "-c", "sleep 0.1"], "environment": env}}
            }
            printed = f"; printf '%s' '{json.dumps(made)}'"
            gen = job(0.1)
            gen["command"] = [*gen["command"][:2], gen["command"][2] + printed]
            tasks["gen"] = {"job": gen, "isGenerator": True, "parents": ["head"],
                            "children": ["tail"]}  # fmt: skip
        if n % 4 == 0:
            box = {
                "command": ["sh", "-c", "sleep 0.5"],
                "image": IMAGE,
                "environment": env,
                "memoryMB": "32",
            }
            tasks["boxed"] = {"job": box, "parents": ["head"]}
        return {"tag": tag, "parameters": {"ITEM": ["a", "b"]}, "tasks": tasks}

    def drove(self, task_id: str) -> dict[str, Any]:
        return {
            "type": "CREATE",
            "spec": {
                "sourceAppName": "CHAOS",
                "taskId": task_id,
                "executable": {"type": "DOCKER", "url": IMAGE, "dockerPullTimeout": "100 seconds"},
                "resources": [{"type": "CPU", "count": 1}, {"type": "MEMORY", "sizeInMB": 32}],
                "env": {"CHAOS_MARKER": self.marker},
                "args": ["sh", "-c", "sleep 1; echo done"],
            },
            "opSpec": {"timeout": "30 seconds"},
        }
