"""What the host can still take: a global slot limit, CPU and memory, and whole cores to pin.

A job's ``cpus``/``memory_mb`` are reserved while it runs. Jobs that ask for pinned cores
(``pin_cores``) also get that many distinct core ids, given to the container as its cpuset.
"""

from __future__ import annotations

import functools
import math
import os

from taskd.models import JobSpec


def cores_needed(job: JobSpec) -> int:
    return max(1, math.ceil(job.cpus)) if job.pin_cores else 0


@functools.cache
def host_cores() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return tuple(range(os.cpu_count() or 1))


class Capacity:
    def __init__(self, slots: int, cpus: float, memory_mb: int) -> None:
        self.slots = slots
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.used_slots = 0
        self.used_cpus = 0.0
        self.used_memory = 0
        self.free_cores = list(host_cores()[: max(0, math.floor(cpus))])

    def refusal(self, job: JobSpec) -> str | None:
        """Why the job could never run here, whatever else runs; None if it could."""
        if job.cpus > self.cpus + 1e-9:
            return f"it asks for {job.cpus:g} CPUs and this host offers {self.cpus:g}"
        if job.memory_mb > self.memory_mb:
            return f"it asks for {job.memory_mb} MB and this host offers {self.memory_mb} MB"
        if cores_needed(job) > len(host_cores()[: max(0, math.floor(self.cpus))]):
            return f"it asks for {cores_needed(job)} whole cores and this host has fewer"
        return None

    @property
    def full(self) -> bool:
        return self.used_slots >= self.slots

    def fits(self, job: JobSpec, reserved: JobSpec | None = None) -> bool:
        """Whether the job can start now, leaving room for ``reserved`` if given."""
        slots, cpus = self.used_slots + 1, self.used_cpus + job.cpus
        memory, cores = self.used_memory + job.memory_mb, cores_needed(job)
        if reserved is not None:
            slots, cpus = slots + 1, cpus + reserved.cpus
            memory, cores = memory + reserved.memory_mb, cores + cores_needed(reserved)
        return (
            slots <= self.slots
            and cpus <= self.cpus + 1e-9
            and memory <= self.memory_mb
            and cores <= len(self.free_cores)
        )

    def take(self, job: JobSpec) -> tuple[int, ...]:
        """Reserve what the job needs; returns the cores pinned for it (maybe none)."""
        self.used_slots += 1
        self.used_cpus += job.cpus
        self.used_memory += job.memory_mb
        n = cores_needed(job)
        cores, self.free_cores = tuple(self.free_cores[:n]), self.free_cores[n:]
        return cores

    def give(self, job: JobSpec, cores: tuple[int, ...]) -> None:
        self.used_slots -= 1
        self.used_cpus = max(0.0, self.used_cpus - job.cpus)
        self.used_memory = max(0, self.used_memory - job.memory_mb)
        if cores:
            self.free_cores = sorted({*self.free_cores, *cores})


class Pools(Capacity):
    """The host's capacity, plus a pool of its own for each runner that runs elsewhere.

    A job of a runner with a pool (the swarm) is accounted there and leaves the host alone.
    """

    def __init__(self, slots: int, cpus: float, memory_mb: int) -> None:
        super().__init__(slots, cpus, memory_mb)
        self.pools: dict[str, Capacity] = {}

    def refusal(self, job: JobSpec) -> str | None:
        pool = self.pools.get(job.runner)
        return pool.refusal(job) if pool is not None else super().refusal(job)

    @property
    def full(self) -> bool:
        return self.used_slots >= self.slots and all(p.full for p in self.pools.values())

    def no_slot(self, job: JobSpec) -> bool:
        """Every slot of the pool the job would run in is taken."""
        pool = self.pools.get(job.runner)
        return pool.full if pool is not None else self.used_slots >= self.slots

    def fits(self, job: JobSpec, reserved: JobSpec | None = None) -> bool:
        pool = self.pools.get(job.runner)
        if reserved is not None and self.pools.get(reserved.runner) is not pool:
            reserved = None  # waiting for another pool: no room to leave here
        if pool is not None:
            return pool.fits(job, reserved)
        return super().fits(job, reserved)

    def take(self, job: JobSpec) -> tuple[int, ...]:
        pool = self.pools.get(job.runner)
        return pool.take(job) if pool is not None else super().take(job)

    def give(self, job: JobSpec, cores: tuple[int, ...]) -> None:
        pool = self.pools.get(job.runner)
        if pool is not None:
            pool.give(job, cores)
        else:
            super().give(job, cores)
