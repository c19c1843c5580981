"""Where asynchronous GRPO's two sides compute on a CPU machine (``rollout.cpu_split``): when the engine
samples while the trainer learns, both would otherwise spread threads over every core and take turns on
them. Split, vLLM's worker is bound to the last core (``VLLM_CPU_OMP_THREADS_BIND``, read when the engine
starts) and the trainer's thread to the others (torch's intra-op threads, and the affinity of the thread
that runs the update)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def split_cores(enabled: bool) -> Iterator[None]:
    """Within the block (engine start included), engine and trainer on their own cores when ``enabled``
    and the machine has at least two; everything restored on exit. A ``VLLM_CPU_OMP_THREADS_BIND`` the
    user set is kept."""
    cores = sorted(os.sched_getaffinity(0))
    if not enabled or len(cores) < 2:
        yield
        return
    engine, trainer = cores[-1:], cores[:-1]
    saved_env, saved_threads = os.environ.get("VLLM_CPU_OMP_THREADS_BIND"), torch.get_num_threads()
    if saved_env is None:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, engine))
    try:
        torch.set_num_threads(len(trainer))
        os.sched_setaffinity(0, trainer)  # this thread only; the engine's thread mostly waits on vLLM
        yield
    finally:
        os.sched_setaffinity(0, cores)
        torch.set_num_threads(saved_threads)
        if saved_env is None:
            os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
