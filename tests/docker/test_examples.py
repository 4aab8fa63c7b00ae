"""The container examples (nightly backup, Drove task) applied and run on a real engine.

No registry can be reached, so the image the examples name (busybox) is supplied as a local
image with every busybox applet (tar, gzip, date, ...) and the examples are run with it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.dockerutil import image_exists, remove_labelled
from tests.server import Server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMED = "busybox:1.36"
LOCAL = "taskd-examples-busybox:latest"
pytestmark = pytest.mark.docker


def build_busybox() -> str:
    """A local image standing in for busybox: the host's static busybox and all its applets."""
    if image_exists(LOCAL):
        return LOCAL
    busybox = shutil.which("busybox")
    assert busybox, "a static busybox is needed to build the example image"
    with tempfile.TemporaryDirectory() as root:
        base = Path(root)
        for d in ("bin", "tmp", "etc"):
            (base / d).mkdir()
        (base / "tmp").chmod(0o1777)
        (base / "etc" / "hostname").write_text("example\n")
        shutil.copy(busybox, base / "bin" / "busybox")
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()  # fmt: skip
        for applet in applets:
            if applet != "busybox":
                (base / "bin" / applet).symlink_to("busybox")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-c", "ENV PATH=/bin", "-", LOCAL],
                       stdin=tar.stdout, check=True, capture_output=True)  # fmt: skip
        tar.stdout.close()
        assert tar.wait() == 0
    return LOCAL


@pytest.fixture
def example_server(tmp_path, docker_ready):
    build_busybox()
    srv = Server(tmp_path, "--local-user", "root")
    asyncio.run(srv.start())
    with sqlite3.connect(srv.db) as db:
        instance = db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]
    yield srv
    srv.stop()
    remove_labelled(f"taskd.instance={instance}")


def local_copy(tmp_path: Path, name: str) -> Path:
    text = (EXAMPLES / name).read_text()
    assert NAMED in text
    copy = tmp_path / Path(name).name
    copy.write_text(text.replace(NAMED, LOCAL))
    return copy


def test_nightly_backup_in_a_container(example_server: Server, tmp_path):
    cli = Cli(tmp_path, example_server)
    cli.ok("apply", "-f", str(local_copy(tmp_path, "nightly-backup.yaml")), "--yes")
    shown = json.loads(cli.ok("defs", "show", "nightly-backup", "-o", "json"))
    task = shown["task_definitions"][0]
    assert (task["max_attempts"], task["max_runtime_seconds"]) == (3, 900)
    assert "At 02:30 (Europe/Berlin)" in cli.ok("defs")
    run = json.loads(cli.ok("trigger", "nightly-backup", "--wait", "-o", "json", timeout=120))
    assert run["status"] == "succeeded"
    out = cli.ok("logs", run["task"][0]["task_id"])
    assert "/tmp/etc-" in out and ".tar.gz" in out


def test_drove_task_create_logs_show_kill(example_server: Server, tmp_path):
    cli = Cli(tmp_path, example_server)
    spec = local_copy(tmp_path, "drove/hello-task.yaml")
    assert cli.ok("task", "create", str(spec)).strip() == "created EXAMPLES-hello-1"
    out = cli.ok("task", "logs", "EXAMPLES", "hello-1", "-f", timeout=120)
    assert out == "hello from container task hello-1\n"
    shown = json.loads(cli.ok("task", "show", "EXAMPLES", "hello-1", "-o", "json"))
    assert shown["taskResult"]["status"] == "SUCCESSFUL"
    assert "SUCCESSFUL" in cli.ok("task", "show", "EXAMPLES", "hello-1")
    assert "already exists" in cli.fails("task", "create", str(spec))

    long = (
        spec.read_text()
        .replace("hello-1", "sleeper")
        .replace('echo "$GREETING from container task $DROVE_TASK_ID"', "sleep 300")
    )
    (tmp_path / "sleeper.yaml").write_text(long)
    cli.ok("task", "create", "sleeper.yaml")
    assert cli.ok("task", "kill", "EXAMPLES", "sleeper").strip() == "killed EXAMPLES/sleeper"
    shown = json.loads(cli.ok("task", "show", "EXAMPLES", "sleeper", "-o", "json"))
    assert shown["state"] == "STOPPED"
    assert "not found" in cli.fails("task", "show", "EXAMPLES", "nope")
