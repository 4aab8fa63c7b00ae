"""What a container job runs with: its environment and taskd's labels, shared by the docker
and swarm runners, and the docker runner's container configuration."""

from __future__ import annotations

from typing import Any

from taskd.runners.base import AttemptContext


def job_env(ctx: AttemptContext, url: str | None = None) -> dict[str, str]:
    """taskd's variables (``TASKD_URL`` as ``url`` when given: the address a container on its
    network reaches taskd at), then the job's own."""
    env = dict(ctx.env)
    if url and "TASKD_URL" in env:
        env["TASKD_URL"] = url
    env.update(ctx.job.env)
    return env


def job_labels(ctx: AttemptContext, instance: str) -> dict[str, str]:
    """The job's labels with taskd's last: a job must not be able to disown what runs it."""
    return {
        **ctx.labels,
        "taskd.instance": instance,
        "taskd.run": str(ctx.run_id),
        "taskd.task": str(ctx.task_id),
        "taskd.attempt": ctx.attempt_uuid,
    }


def container_config(
    ctx: AttemptContext, instance: str, network: str, url: str | None = None
) -> dict[str, Any]:
    """The engine's ``containers/create`` body for one attempt."""
    job = ctx.job
    host: dict[str, Any] = {"NetworkMode": network}
    if ctx.cpuset:
        host["CpusetCpus"] = ",".join(str(c) for c in ctx.cpuset)
    elif job.cpus > 0:
        host["NanoCpus"] = int(job.cpus * 1e9)
    if job.memory_mb > 0:
        # The same value for both: no swap on top of the memory limit.
        host["Memory"] = host["MemorySwap"] = job.memory_mb * 2**20
    if job.volumes:
        host["Binds"] = [
            f"{v.host_path}:{v.container_path}" + (":ro" if v.read_only else "")
            for v in job.volumes
        ]
    config: dict[str, Any] = {
        "Image": job.image,
        "Env": [f"{k}={v}" for k, v in job_env(ctx, url).items()],
        "Labels": job_labels(ctx, instance),
        "HostConfig": host,
    }
    if job.command:
        config["Cmd"] = list(job.command)
    if job.workdir:
        config["WorkingDir"] = job.workdir
    return config
