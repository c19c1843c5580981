"""Checkpoints that survive ``kill -9`` and resume at the same or another world size.

Layout of a run directory's ``checkpoints/``::

    step_00000040/            one checkpoint: torch.distributed.checkpoint shards of model + optimizer,
        trainer.json          step, data position, scheduler state, world size at save time
        rng_rank{r}.pt        each rank's RNG states
    latest                    name of the newest complete checkpoint

A checkpoint is written into ``.tmp-step_...`` and renamed only once every rank has finished, then
``latest`` is replaced atomically: a crash at any moment leaves the previous checkpoint intact and
``latest`` pointing at a complete one. Distributed checkpoints reshard on load, so a run saved by 4
ranks resumes on 2. ``export_hf`` writes a plain transformers directory (safetensors) for vLLM and
evaluation. Multi-node runs need the run directory on a shared filesystem.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from libra.train.dist import World

_LATEST = "latest"


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


class Checkpointer:
    def __init__(self, root: str | Path, world: World, keep_last: int = 2):
        self.root, self.world, self.keep_last = Path(root), world, keep_last

    def latest(self) -> Path | None:
        pointer = self.root / _LATEST
        if not pointer.is_file():
            return None
        path = self.root / pointer.read_text().strip()
        return path if (path / "trainer.json").is_file() else None

    def save(self, step: int, model, optimizer, trainer_state: dict, rank_state: dict | None = None) -> Path:
        """Collective. ``trainer_state`` (JSON-able: data position, scheduler) is written by rank 0;
        ``rank_state`` (tensors, lists, numbers: what only this rank holds, such as asynchronous GRPO's
        rollouts sampled ahead) by every rank, loaded back by ``rank_state``."""
        name = f"step_{step:08d}"
        final, tmp = self.root / name, self.root / f".tmp-{name}"
        if self.world.is_main:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a crash during an earlier save
            tmp.mkdir(parents=True)
        dist.barrier()
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
        torch.save(_rng_state(), tmp / f"rng_rank{self.world.rank}.pt")
        if rank_state is not None:
            torch.save(rank_state, tmp / f"state_rank{self.world.rank}.pt")
        dist.barrier()
        if self.world.is_main:
            state = dict(trainer_state, step=step, world_size=self.world.world_size)
            (tmp / "trainer.json").write_text(json.dumps(state, indent=1))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            pointer = self.root / f".{_LATEST}.tmp"
            pointer.write_text(name)
            os.replace(pointer, self.root / _LATEST)
            self._prune(keep=name)
        dist.barrier()
        return final

    def trainer_state(self, path: Path) -> dict:
        """The trainer state saved with the checkpoint at ``path``, readable before any model exists (a resume
        checks it against the new settings first)."""
        return json.loads((path / "trainer.json").read_text())

    def rank_state(self, path: Path) -> dict | None:
        """This rank's ``rank_state`` saved with the checkpoint at ``path`` (None when it saved none)."""
        file = path / f"state_rank{self.world.rank}.pt"
        return torch.load(file, weights_only=True) if file.is_file() else None

    def load(self, path: Path, model, optimizer) -> dict:
        """Restore model and optimizer shards (resharded to this world size), this rank's RNG states when
        the world size is unchanged, and return the trainer state."""
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        trainer_state = self.trainer_state(path)
        rng_file = path / f"rng_rank{self.world.rank}.pt"
        if trainer_state["world_size"] == self.world.world_size and rng_file.is_file():
            rng = torch.load(rng_file, weights_only=True)
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state(rng["cuda"])
        return trainer_state

    def _prune(self, keep: str) -> None:
        done = sorted(p for p in self.root.glob("step_*") if p.is_dir())
        for old in done[:-self.keep_last] if self.keep_last > 0 else []:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)


def export_hf(model, out: str | Path, tokenizer_dir: str | Path, world: World) -> Path | None:
    """Collective. Rank 0 writes ``out`` as a transformers directory: config, generation config,
    ``model.safetensors`` (tied head stored once) and the tokenizer of ``tokenizer_dir``."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from libra.train.model import full_state_dict

    state = full_state_dict(model, rank0_cpu=True)
    out = Path(out)
    if world.is_main:
        tmp = out.with_name(f".tmp-{out.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        save_file({k: v.contiguous() for k, v in state.items()}, tmp / "model.safetensors", metadata={"format": "pt"})
        model.config.save_pretrained(tmp)
        if model.generation_config is not None:
            model.generation_config.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    dist.barrier()
    return out if world.is_main else None
