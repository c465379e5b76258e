"""A run over many processes: torchrun ranks, Slurm job-array tasks, or both (each task a torchrun job).

The run's items, sorted by key, are dealt out **strided**: worker ``i`` of ``n`` takes items ``i, i + n,
i + 2n, ...`` (:func:`shard`), so every item goes to exactly one worker, nothing is padded or repeated, and the
shards differ in length by at most one. Workers are numbered ``task * world_size + rank`` over ``task_count *
world_size``, where the torchrun values come from ``RANK``/``WORLD_SIZE`` and the Slurm ones from
``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN``/``SLURM_ARRAY_TASK_COUNT`` (a contiguous array: ``--array=0-7``
or ``1-8``, with or without ``%limit``). The shards come from the whole sorted list, finished items included,
so that every launcher and every rerun deals the same items to the same worker.

Under torchrun each rank joins a process group (NCCL on its own GPU ``cuda:LOCAL_RANK``; Gloo on the CPU, with
the machine's cores divided between the ranks of the node, and where several ranks share a GPU, which NCCL
refuses), only to wait for the others: ranks never exchange tensors, so the results do not depend on the number
of processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

import attrs
import torch
import torch.distributed as dist

from brgm.core.errors import ConfigError

T = TypeVar("T")
#: how long a rank that has finished its shard waits at the barrier for the slowest one
BARRIER_TIMEOUT = timedelta(days=7)


def shard(count: int, index: int, workers: int) -> range:
    """The positions of worker ``index`` of ``workers`` among ``count`` sorted items (strided)."""
    if workers < 1 or not 0 <= index < workers:
        raise ConfigError(f"worker index must be in 0..{workers - 1} (of {workers} workers), got {index}")
    return range(index, count, workers)


@attrs.frozen
class Workers:
    """Where this process stands in a run: its shard (``index`` of ``count``) and its torchrun rank."""

    index: int = 0
    count: int = 1
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def lead(self) -> bool:
        """This process assembles the run-level files (rank 0; every task of a job array without torchrun)."""
        return self.rank == 0

    @property
    def torchrun(self) -> bool:
        return self.world_size > 1

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, items: Sequence[T]) -> list[T]:
        """This worker's items of the sorted ``items``."""
        return [items[i] for i in shard(len(items), self.index, self.count)]

    def barrier(self) -> None:
        """Wait for every rank (a no-op outside torchrun)."""
        if dist.is_available() and dist.is_initialized():
            dist.barrier()


def from_environment(env: Mapping[str, str] | None = None) -> Workers:
    """The :class:`Workers` of this process from torchrun's and Slurm's environment variables."""
    env = os.environ if env is None else env

    def number(name: str, default: int) -> int:
        try:
            return int(env.get(name, default))
        except ValueError:
            raise ConfigError(f"environment variable {name} must be an integer, got {env[name]!r}") from None

    world_size, rank = number("WORLD_SIZE", 1), number("RANK", 0)
    tasks = number("SLURM_ARRAY_TASK_COUNT", 1) if "SLURM_ARRAY_TASK_ID" in env else 1
    task = number("SLURM_ARRAY_TASK_ID", 0) - number("SLURM_ARRAY_TASK_MIN", 0) if tasks > 1 else 0
    if not 0 <= task < tasks:
        raise ConfigError(
            f"SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN is {task}, outside 0..{tasks - 1}: shard with a contiguous "
            "job array (--array=0-N)"
        )
    if not 0 <= rank < world_size:
        raise ConfigError(f"RANK {rank} is outside 0..{world_size - 1} (WORLD_SIZE {world_size})")
    return Workers(
        index=task * world_size + rank,
        count=tasks * world_size,
        rank=rank,
        world_size=world_size,
        local_rank=number("LOCAL_RANK", 0),
        local_world_size=number("LOCAL_WORLD_SIZE", 1),
    )


def rank_device(device: torch.device, workers: Workers) -> torch.device:
    """``device`` for this rank: a CUDA device without an index becomes ``cuda:LOCAL_RANK`` (modulo the
    machine's GPUs, so several ranks may share one)."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", workers.local_rank % torch.cuda.device_count())
    return device


def cpu_threads(workers: Workers, cores: int | None = None) -> int:
    """The intra-op threads of one rank on the CPU: the node's cores divided between its ranks."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, cores // workers.local_world_size)


@contextmanager
def joined(workers: Workers, device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the block (NCCL on ``device`` when it is a GPU of its own, Gloo when
    ranks share a GPU, Gloo with :func:`cpu_threads` threads on the CPU); outside torchrun, nothing."""
    if not workers.torchrun or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        if workers.local_world_size <= torch.cuda.device_count():
            dist.init_process_group("nccl", timeout=BARRIER_TIMEOUT, device_id=device)
        else:
            dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    else:
        torch.set_num_threads(cpu_threads(workers))
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()
