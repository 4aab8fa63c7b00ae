"""One frozen Settings object, built by the CLI from options and ``TASKD_*`` variables."""

from __future__ import annotations

import ipaddress
import os
import pwd
import socket
from dataclasses import dataclass, field
from pathlib import Path


def host_memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return 4096


UNPRIVILEGED = "nobody"  # local jobs run as this user when taskd runs as root and is not told


@dataclass(frozen=True, slots=True)
class JobUser:
    """The identity local jobs take on when it is not taskd's own."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def as_request(self) -> dict[str, object]:
        return {"name": self.name, "uid": self.uid, "gid": self.gid, "groups": list(self.groups)}


def default_local_user() -> str | None:
    """Root's jobs run as an unprivileged user unless told otherwise; anyone else's as itself."""
    return UNPRIVILEGED if os.geteuid() == 0 else None


def job_user(spec: str | None) -> JobUser | None:
    """Resolve ``--local-user``: None when jobs keep taskd's own identity.

    Raises ValueError for an unknown user, or for another user when taskd is not root (it
    could not switch to it).
    """
    if spec is None or not spec.strip():
        return None
    spec = spec.strip()
    try:
        entry = pwd.getpwuid(int(spec)) if spec.isdigit() else pwd.getpwnam(spec)
    except KeyError:
        if not spec.isdigit():
            raise ValueError(f"no user named {spec!r} on this host") from None
        uid = int(spec)
        user = JobUser(spec, uid, uid, (uid,))  # a bare uid: its own group, nothing more
    else:
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        user = JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)
    if user.uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        raise ValueError(f"taskd must run as root to run local jobs as {spec!r}")
    return user


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
    container_runner: str = "docker"  # what runs container jobs that name no runner
    kill_grace: float = 10.0  # stop signal -> hard kill
    shutdown_grace: float = 5.0  # SIGTERM: how long local processes may finish
    allowed_volumes: tuple[str, ...] = ()  # host paths (and what is below them) jobs may mount
    local_user: str | None = None  # run local jobs as this user (name or uid); None: taskd's own

    # output
    log_head_bytes: int = 1 << 20  # per stream and attempt: the first bytes kept
    log_tail_bytes: int = 1 << 20  # ... and the last bytes kept
    log_retention_days: float = 30.0
    log_retention_runs: int = 0  # keep output of the newest N finished runs per name; 0 = all

    # history: finished runs (with tasks, attempts, state changes, ledger rows) are deleted
    # after this many days, and beyond this many per definition; 0 = no limit. The defaults
    # keep a definition that fires every second to a bounded database.
    keep_runs_days: float = 90.0
    keep_runs_per_definition: int = 10_000
    retention_interval: float = 3600.0  # seconds between retention passes

    # work queue
    queue_default_lease: float = 3600.0  # seconds; a task's max_assign_time of 0 means this
    queue_open_registration: bool = False  # anyone may create workers (the seed's examples)

    # DAG runs: Daggy has no authentication; this accepts its callers as they are
    # (loopback binds only), so anyone who can reach taskd may run commands on this host.
    daggy_anonymous: bool = False

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

    # notifications: the SMTP server e-mail goes through, and where PagerDuty events go
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "taskd@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    pagerduty_url: str | None = None  # default: PagerDuty's Events API v2
    secrets_key_file: Path | None = None  # default: <db>.key, made (0600) at first start

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
