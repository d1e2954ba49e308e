"""Data parallelism with torch.distributed: which process this is, the process group, and the few collectives the
trainer needs. A plain `tinylm train` is world size 1 and never touches torch.distributed.

Started by torchrun (`tinylm train --nproc N` runs it for you), each process reads RANK, LOCAL_RANK and
WORLD_SIZE from its environment. gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import uuid
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from tinylm.device import cpu_count
from tinylm.errors import UsageError


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1

    @property
    def main(self) -> bool:
        """True on rank 0, the only process that writes files, logs and progress."""
        return self.rank == 0


def world() -> World:
    """The World of this process, from torchrun's environment variables (size 1 without them)."""
    env = os.environ
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        return World(int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), size,
                     int(env.get("LOCAL_WORLD_SIZE", str(size))))
    except ValueError:
        raise UsageError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (set by torchrun)") from None


def check_batch(batch_size: int, processes: int) -> None:
    """A UsageError unless the global batch splits evenly among the processes."""
    if batch_size % processes:
        raise UsageError(f"train.batch_size={batch_size} must be a multiple of the {processes} processes (each trains "
                         "on an equal slice of the global batch)")


def setup(device: torch.device) -> torch.device:
    """Join the process group (once) and return this rank's device: cuda:LOCAL_RANK on CUDA, else `device`."""
    w = world()
    if w.size == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_teardown)
    return device


def _teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `values` over every rank (a copy; `values` itself on a single process)."""
    if not active():
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def barrier() -> None:
    """Wait until every rank gets here (no-op on a single process)."""
    if active():
        dist.barrier()


def launch(nproc: int, argv: list[str]) -> int:
    """Run `tinylm <argv>` (less its --nproc) in `nproc` processes on this machine with torchrun's launcher (what
    `torchrun --standalone --nproc-per-node N -m tinylm.cli ...` does); returns the exit status of the first
    process that failed, or 0. A process that fails prints its own one-line error."""
    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1 (got {nproc})")
    # the cores shared among the processes (torchrun would set 1 thread each, with a banner saying so)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpu_count() // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # we report failures ourselves
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1)
    try:
        elastic_launch(config, sys.executable)("-m", "tinylm.cli", *_without_nproc(argv))
    except ChildFailedError as e:
        codes = [f.exitcode for _, f in sorted(e.failures.items())]
        return next((c for c in codes if c > 0), 1)
    return 0


def _without_nproc(argv: list[str]) -> list[str]:
    """`argv` without its --nproc option (the processes launched train; they do not launch again)."""
    out, skip = [], False
    for a in argv:
        if skip or a.startswith("--nproc="):
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        out.append(a)
    return out
