"""A private Docker engine that a test may stop and restart without touching the shared one.

It has its own data root, exec root (and so its own containerd), pid file and unix socket,
no bridge and no iptables rules. Needs root and ``dockerd`` on the PATH.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.dockerutil import BUILD_SCRIPT, TEST_IMAGE


def private_engine_possible() -> str | None:
    """Why a private engine cannot be started here; None when it can."""
    if os.geteuid() != 0:
        return "starting a private Docker engine needs root"
    if shutil.which("dockerd") is None:
        return "dockerd is not installed"
    return None


class PrivateEngine:
    """One dockerd of our own: ``start``, ``stop``, ``start`` again, ``destroy``."""

    def __init__(self) -> None:
        # Short: a unix socket path may not exceed ~100 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="taskd-engine-"))
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def env(self) -> dict[str, str]:
        """What points a docker client (the CLI, taskd) at this engine."""
        return {"DOCKER_HOST": self.host}

    def _docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.env}, check=False)  # fmt: skip

    def answers(self) -> bool:
        try:
            return (
                self._docker("info", "--format", "{{.ServerVersion}}", timeout=10).returncode == 0
            )
        except subprocess.TimeoutExpired:
            return False

    def start(self, within: float = 60.0) -> None:
        log = open(self.root / f"dockerd-{self.starts}.log", "wb")  # noqa: SIM115
        self.starts += 1
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "docker.pid"),
             "-H", self.host, "--bridge=none", "--iptables=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + within
        while not self.answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the private dockerd exited: {self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private dockerd did not come up: {self.log()}")
            time.sleep(0.2)

    def stop(self, within: float = 60.0) -> None:
        """Stop the engine the way a service manager does (SIGTERM), and wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(within)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def load_test_image(self) -> str:
        """Build the busybox test image into this engine; return its name."""
        result = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=120,
                                env={**os.environ, **self.env}, check=False)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"building the test image failed: {result.stderr or result.stdout}")
        return TEST_IMAGE

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.root.glob("dockerd-*.log"))
        )

    def destroy(self) -> None:
        """Remove every container, stop the engine, delete its files."""
        if self.proc is not None and self.proc.poll() is None:
            ids = self._docker("ps", "-aq").stdout.split()
            if ids:
                self._docker("rm", "-f", *ids)
        self.stop()
        # Mounts left by a crashed engine would make the removal fail halfway; unmount first.
        mounts = Path("/proc/mounts").read_text().splitlines()
        for mount in sorted((m.split()[1] for m in mounts if str(self.root) in m), reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
