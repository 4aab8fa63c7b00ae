"""``taskd doctor``: what could stop taskd from working unattended, one line per check.

Each line is OK, WARN or FAIL with what was found and what to do. Read-only: the database is
opened read-only, and the only thing it makes is a short-lived callback test container.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from taskd.store import integrity

OK, WARN, FAIL = "OK", "WARN", "FAIL"
CLOCK_WARN = 2.0  # seconds of offset from the Docker engine's clock
CALLBACK_WAIT = 20.0  # seconds the test container may take to reach taskd


@dataclass(frozen=True)
class Check:
    """The result of one check."""

    status: str
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return f"{text} -> {self.fix}" if self.fix and self.status != OK else text


@dataclass(frozen=True)
class Options:
    db: Path
    url: str | None = None  # TASKD_URL as containers see it; None: derived from the network
    port: int = 7070
    image: str = "busybox:latest"
    network: str = "bridge"
    min_free_mb: int = 1024


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def check_database(db: Path) -> tuple[Check, str | None]:
    """Integrity and size; also returns the database's instance id (its containers' label)."""
    if not db.exists():
        return Check(
            FAIL, "database", f"{db} does not exist", "give --db, or start taskd once"
        ), None
    try:
        health = integrity.inspect(db)
    except sqlite3.DatabaseError as exc:
        return Check(
            FAIL,
            "database",
            f"{db} cannot be read: {exc}",
            "restore the newest backup (taskd restore BACKUP)",
        ), None
    result, version = health.problems or ["ok"], health.version
    size = sum(
        p.stat().st_size
        for p in db.parent.glob(db.name + "*")
        if p.is_file() and p.name in (db.name, db.name + "-wal")
    )
    if result != ["ok"]:
        return Check(
            FAIL,
            "database",
            f"integrity check failed: {'; '.join(result[:3])}",
            "stop taskd and restore the newest backup (taskd restore BACKUP)",
        ), None
    return Check(OK, "database", f"integrity ok, schema {version}, {_size(size)}"), health.instance


def check_disk(db: Path, min_free_mb: int) -> Check:
    usage = shutil.disk_usage(db.parent if db.parent.exists() else Path("."))
    free = usage.free
    detail = f"{_size(free)} free of {_size(usage.total)} where the database is"
    if free < min_free_mb * 1024 * 1024 // 10:
        return Check(FAIL, "disk", detail, "free space now: writes will fail when it is full")
    if free < min_free_mb * 1024 * 1024:
        return Check(WARN, "disk", detail, f"keep at least {min_free_mb} MiB free")
    return Check(OK, "disk", detail)


def check_file_modes(db: Path) -> list[Check]:
    out = []
    files = (("", "database file"), (".token", "admin token file"), (".key", "secrets key file"))
    for suffix, what in files:
        path = db.with_name(db.name + suffix)
        if not path.exists():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            out.append(
                Check(
                    FAIL,
                    what,
                    f"{path.name} has mode {mode:04o}; others can read it",
                    f"chmod 600 {path}",
                )
            )
        else:
            out.append(Check(OK, what, f"{path.name} has mode {mode:04o}"))
    return out


async def docker_checks(opts: Options, instance: str | None) -> list[Check]:
    import aiodocker

    try:
        docker = aiodocker.Docker()
    except Exception as exc:
        return [
            Check(
                WARN,
                "docker",
                f"no Docker engine configured: {exc}",
                "install Docker or set DOCKER_HOST if container jobs are needed",
            )
        ]
    out: list[Check] = []
    try:
        try:
            version = await asyncio.wait_for(docker.version(), 10)
            info = await asyncio.wait_for(docker.system.info(), 10)
        except Exception as exc:
            return [
                Check(
                    FAIL,
                    "docker",
                    f"the engine does not answer: {exc}",
                    "start dockerd or fix DOCKER_HOST; container jobs wait meanwhile",
                )
            ]
        out.append(
            Check(
                OK,
                "docker",
                f"engine {version.get('Version')} (API {version.get('ApiVersion')}) reachable",
            )
        )
        out.append(clock(info))
        if instance:
            out.append(await orphans(docker, opts.db, instance))
        out.append(await callback(docker, opts))
    finally:
        await docker.close()
    return out


def clock(info: dict) -> Check:
    raw = info.get("SystemTime")
    if not raw:
        return Check(WARN, "clock", "the engine did not report its time", "")
    # Docker gives nanoseconds; fromisoformat takes at most microseconds.
    head, _, rest = raw.partition(".")
    frac = "".join(c for c in rest if c.isdigit())[:6]
    tz = rest[len("".join(c for c in rest if c.isdigit())) :] or "+00:00"
    theirs = dt.datetime.fromisoformat(f"{head}.{frac or '0'}{tz.replace('Z', '+00:00')}")
    offset = time.time() - theirs.timestamp()
    detail = f"{offset:+.2f} s from the Docker engine's clock"
    if abs(offset) > CLOCK_WARN:
        return Check(WARN, "clock", detail, "run an NTP client (chrony, systemd-timesyncd)")
    return Check(OK, "clock", detail)


async def orphans(docker, db: Path, instance: str) -> Check:
    filters = json.dumps({"label": [f"taskd.instance={instance}"]})
    found = await docker.containers.list(all=True, filters=filters)
    active = await asyncio.to_thread(integrity.active_attempts, db)
    stray = [c for c in found if (c["Labels"] or {}).get("taskd.attempt") not in active]
    if stray:
        names = ", ".join(c["Id"][:12] for c in stray[:5])
        return Check(
            WARN,
            "orphan containers",
            f"{len(stray)} of this database's containers belong to no running attempt ({names})",
            "start taskd (it removes them), or: docker rm -f " + names,
        )
    return Check(OK, "orphan containers", f"none ({len(found)} containers of this database)")


async def callback(docker, opts: Options) -> Check:
    url = opts.url
    if url is None:
        try:
            net = await docker.networks.get(opts.network)
            gateway = (await net.show())["IPAM"]["Config"][0]["Gateway"]
        except Exception as exc:
            return Check(
                WARN,
                "container callback",
                f"no gateway on network {opts.network}: {exc}",
                "give --url (TASKD_URL as containers see it)",
            )
        url = f"http://{gateway}:{opts.port}"
    config = {
        "Image": opts.image,
        "Cmd": ["wget", "-q", "-O", "-", f"{url.rstrip('/')}/ready"],
        "Labels": {"taskd.doctor": "1"},
        "HostConfig": {"NetworkMode": opts.network},
    }
    try:
        container = await docker.containers.run(config=config)
    except Exception as exc:
        return Check(WARN, "container callback",
                     f"could not start a test container ({opts.image}): {exc}",
                     "pull the image, or give --image")  # fmt: skip
    try:
        try:
            result = await asyncio.wait_for(container.wait(), CALLBACK_WAIT)
        except TimeoutError:
            result = {"StatusCode": None}
        logs = "".join(await container.log(stdout=True, stderr=True))
    finally:
        await container.delete(force=True)
    if result.get("StatusCode") == 0:
        return Check(OK, "container callback", f"a container reached {url}")
    return Check(
        FAIL,
        "container callback",
        f"a container on {opts.network} cannot reach {url}: "
        f"{logs.strip()[:200] or why(result.get('StatusCode'))}",
        "set --public-url to an address containers reach, or check the firewall",
    )


def why(code: int | None) -> str:
    return f"no answer within {CALLBACK_WAIT:g} s" if code is None else f"wget exited {code}"


async def run_checks(opts: Options) -> list[Check]:
    """Every check, in order."""
    checks = []
    db_check, instance = await asyncio.to_thread(check_database, opts.db)
    checks.append(db_check)
    checks.append(check_disk(opts.db, opts.min_free_mb))
    checks.extend(check_file_modes(opts.db))
    checks.extend(await docker_checks(opts, instance))
    return checks
