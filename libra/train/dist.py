"""The process group every training run lives in, whether started by ``torchrun`` or directly.

A direct start (``libra train sft ...``) makes a one-process group over an in-memory store, so FSDP2,
distributed checkpoints and the all-reduces below run the same code at world size 1 as at 64: there is
no single-process special case to drift out of sync. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> World:
    """Join (or create) the default process group; ``device`` "cuda"/"cpu" (default: CUDA when present).

    Under torchrun the group rendezvous through the environment (MASTER_ADDR/PORT). A direct start makes a
    group of one over an in-memory store: no port to pick or to collide with, and nothing written into
    ``os.environ`` for child processes (vLLM workers, later runs) to inherit."""
    torchrun = "RANK" in os.environ
    rank = int(os.environ["RANK"]) if torchrun else 0
    world_size = int(os.environ["WORLD_SIZE"]) if torchrun else 1
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if torchrun else 0
    use_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if not dist.is_initialized():
        store = None if torchrun else dist.HashStore()
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size, store=store,
                                device_id=dev if use_cuda else None)
    return World(rank, world_size, local_rank, dev)


def shutdown(*, barrier: bool = False) -> None:
    """Leave the process group. ``barrier`` (a clean finish, several ranks): wait for every rank first. A
    gloo rank that tears its group down while a peer still has a collective in flight can abort that peer
    at exit ("terminate called without an active exception", SIGABRT after the last step; seen in CI on
    the 2-rank SFT test). Not after an error: the other ranks may never reach the barrier."""
    if dist.is_initialized():
        if barrier and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sums over ranks of a few host numbers (token counts, loss sums) in one collective."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
