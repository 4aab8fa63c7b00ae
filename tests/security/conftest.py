"""Some security tests look at real containers: the Docker fixtures of tests/docker."""

from tests.docker.conftest import docker_ready  # noqa: F401
