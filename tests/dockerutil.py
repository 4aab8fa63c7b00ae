"""Helpers for tests that need a real Docker engine and the local test image."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

TEST_IMAGE = "taskd-test:latest"
BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "build-test-image"


def docker_available() -> bool:
    """Whether a Docker engine answers (through the ``docker`` command line)."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def image_exists(image: str = TEST_IMAGE) -> bool:
    """Whether the engine has ``image`` locally."""
    result = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, timeout=20, check=False
    )
    return result.returncode == 0


def ensure_test_image() -> str:
    """Build the test image unless the engine has it already; return its name."""
    if not image_exists(TEST_IMAGE):
        result = subprocess.run(
            [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"building {TEST_IMAGE} failed: {result.stderr.strip() or result.stdout.strip()}"
            )
    return TEST_IMAGE


def remove_labelled(label: str) -> None:
    """Force-remove every container carrying ``label`` ("key=value")."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60, check=False)


class CollectingSink:
    """An output sink that keeps everything written to it, per stream."""

    def __init__(self) -> None:
        self.data: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def write(self, stream: str, data: bytes) -> None:
        self.data.setdefault(stream, bytearray()).extend(data)

    @property
    def stdout(self) -> bytes:
        return bytes(self.data["stdout"])

    @property
    def stderr(self) -> bytes:
        return bytes(self.data["stderr"])
