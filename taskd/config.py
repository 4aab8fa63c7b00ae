"""One frozen Settings object, built by the CLI from options and ``TASKD_*`` variables."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path


def host_memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return 4096


@dataclass(frozen=True)
class Settings:
    db: Path = Path("taskd.db")
    host: str = "127.0.0.1"
    port: int = 7070
    admin_token: str | None = None
    public_url: str | None = None  # what jobs get as TASKD_URL; derived from host/port if unset

    # capacity
    max_parallel: int = 16
    cpus: float = float(os.cpu_count() or 1)
    memory_mb: int = field(default_factory=host_memory_mb)

    # runners
    docker_network: str = "auto"  # "auto": bridge when the engine has it, else none
    docker_keep_containers: bool = False
    kill_grace: float = 10.0  # stop signal -> hard kill
    shutdown_grace: float = 5.0  # SIGTERM: how long local processes may finish
    allowed_volumes: tuple[str, ...] = ()  # host paths (and what is below them) jobs may mount

    # output
    log_head_bytes: int = 1 << 20  # per stream and attempt: the first bytes kept
    log_tail_bytes: int = 1 << 20  # ... and the last bytes kept
    log_retention_days: float = 30.0
    log_retention_runs: int = 0  # keep output of the newest N finished runs per name; 0 = all

    # work queue
    queue_default_lease: float = 3600.0  # seconds; a task's max_assign_time of 0 means this
    queue_open_registration: bool = False  # anyone may create workers (the seed's examples)

    # http
    max_body_bytes: int = 10 << 20
    header_timeout: float = 10.0  # seconds a request head may take (and an idle keep-alive)
    body_timeout: float = 30.0  # seconds an authorised request's body may take
    max_connections: int = 1024  # open client connections; kept below the file limit
    max_follows: int = 256  # log-follow streams open at once, in total
    max_follows_per_credential: int = 16  # ... and per credential
    viewer_max_dag_tasks: int = 10_000  # what a DAG a viewer validates may expand to
    idempotency_window: float = 86400.0  # seconds an Idempotency-Key is remembered
    log_format: str = "human"
    log_level: str = "info"

    hostname: str = field(default_factory=socket.gethostname)

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def token_file(self) -> Path:
        return self.db.with_name(self.db.name + ".token")
