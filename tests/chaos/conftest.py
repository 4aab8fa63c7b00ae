"""The chaos test needs the Docker engine and the local test image, like tests/docker."""

from tests.docker.conftest import docker_ready  # noqa: F401
