"""What every trainer does around its own loss: join the process group, build and shard the model,
the optimizer and schedule, resume from the latest checkpoint, step the optimizer safely, log, save,
and export. SFT, DPO and GRPO each own only their data and their loss (see ``sft.py``, ``dpo.py``,
``grpo.py``), so each loop reads in one sitting.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch

from libra.config import save_config
from libra.train.checkpoint import Checkpointer, export_hf
from libra.train.dist import all_reduce_sum, init_distributed, shutdown
from libra.train.logger import RunLogger
from libra.train.model import FusedHeadLM, load_causal_lm, shard
from libra.train.optim import build_optimizer


class TrainSession:
    """``cfg`` has sections ``model`` (ModelConfig), ``optim`` (OptimConfig) and ``run`` (RunConfig)."""

    def __init__(self, cfg, *, total_steps: int, desc: str):
        self.cfg = cfg
        self.world = init_distributed(None if cfg.run.device == "auto" else cfg.run.device)
        torch.manual_seed(cfg.run.seed)
        self.out = Path(cfg.run.out)
        self.total_steps = total_steps
        mixed = cfg.model.mixed_precision
        mixed = self.world.device.type == "cuda" if mixed is None else mixed
        lm = load_causal_lm(cfg.model.path, trust_remote_code=cfg.model.trust_remote_code,
                            activation_checkpointing=cfg.model.activation_checkpointing, liger=cfg.model.liger)
        if cfg.model.attn_implementation != "sdpa":
            lm.set_attn_implementation(cfg.model.attn_implementation)
        self.model = shard(FusedHeadLM(lm), self.world, mixed_precision=mixed)
        self.optimizer, self.scheduler = build_optimizer(self.model, cfg.optim, total_steps)
        self.checkpoints = Checkpointer(self.out / "checkpoints", self.world, keep_last=cfg.run.keep_last)
        self.step, self.state = 0, {}
        latest = self.checkpoints.latest()
        if latest is not None:
            self.state = self.checkpoints.load(latest, self.model, self.optimizer)
            self.step = self.state["step"]
            self.scheduler.load_state_dict(self.state["scheduler"])
        if self.world.is_main:
            save_config(cfg, self.out / "config.yaml")
        self.logger = RunLogger(self.out, self.world, total_steps, start_step=self.step,
                                tensorboard=cfg.run.tensorboard, desc=desc)
        self.resumed_from = latest

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps

    def sync_gradients(self, enabled: bool) -> None:
        """Reduce-scatter gradients only on the last micro-batch of an accumulation (saves traffic)."""
        self.model.set_requires_gradient_sync(enabled)

    def optimizer_step(self) -> dict:
        """Clip, then step, unless the loss or a gradient is not finite: then the step is skipped, the
        gradients dropped, and the weights stay as they were (the schedule still advances)."""
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        skipped = not math.isfinite(norm)
        lr = self.scheduler.get_last_lr()[0]
        if not skipped:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped first step is deliberate, not the misuse torch warns about
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()
        self.step += 1
        return {"grad_norm": norm, "skipped": int(skipped), "lr": lr}

    def global_sum(self, *values: float) -> list[float]:
        return all_reduce_sum(list(values), self.world.device)

    def maybe_save(self, trainer_state: dict, *, force: bool = False) -> None:
        every = self.cfg.run.save_every
        if force or (every > 0 and self.step % every == 0):
            state = dict(trainer_state, scheduler=self.scheduler.state_dict())
            self.checkpoints.save(self.step, self.model, self.optimizer, state)

    def finish(self, trainer_state: dict) -> Path | None:
        """Final checkpoint (if the last step was not just saved) and the transformers export."""
        latest = self.checkpoints.latest()
        if latest is None or latest.name != f"step_{self.step:08d}":
            self.maybe_save(trainer_state, force=True)
        exported = None
        if self.cfg.run.export:
            exported = export_hf(self.model, self.out / "final", self.cfg.model.path, self.world)
        self.logger.close()
        return exported

    def close(self) -> None:
        shutdown()
