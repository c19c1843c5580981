"""What every trainer does around its own loss: the tokenizer and pad id, joining the process group,
building and sharding the model (and a reference model built the same way), the optimizer and schedule,
resuming from the latest checkpoint (refusing a changed config, warning when a new run length moves the
learning-rate schedule), the pass count all ranks agree on, batches with the configured attention
implementation (and the idle-rank batch), stepping the optimizer safely, logging, saving, exporting, and
closing. SFT, DPO and GRPO each own only their data and their loss (see ``sft.py``, ``dpo.py``,
``grpo/loop.py``), so each loop reads in one sitting::

    tokenizer = load_tokenizer(cfg)
    ... data, total steps ...
    with TrainSession(cfg, total_steps=total, desc="sft", tokenizer=tokenizer) as session:
        while not session.done: ...
        session.finish(state)
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from libra.config import ConfigError, save_config, to_dict
from libra.train.checkpoint import Checkpointer, export_hf
from libra.train.dist import all_reduce_sum, init_distributed, shutdown
from libra.train.logger import RunLogger
from libra.train.model import FusedHeadLM, load_causal_lm, shard
from libra.train.optim import build_optimizer, first_changed_step
from libra.train.packing import Example, batch_inputs

# Settings a resume may change without mixing two runs in one: how long it goes and how it is saved and
# logged (changes are still reported, and the old config.yaml kept; a length that moves the learning-rate
# schedule is warned about and recorded in the checkpoints). Any other change stops the resume unless
# run.allow_config_change is set.
RESUME_MAY_CHANGE = ("run.allow_config_change", "run.max_steps", "data.epochs", "run.save_every", "run.keep_last",
                     "run.tensorboard", "run.export")


def load_tokenizer(cfg):
    """The tokenizer of ``cfg.model.path`` (after checking the folder): trainers need it for their data
    before the session (and its process group) exists."""
    from transformers import AutoTokenizer

    from libra.models.checks import check_model_dir

    check_model_dir(cfg.model.path)
    return AutoTokenizer.from_pretrained(cfg.model.path, trust_remote_code=cfg.model.trust_remote_code)


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(saved: Path, cfg) -> dict[str, tuple]:
    """``{dotted key: (value in saved, value now)}`` for every setting that differs from the run's
    ``config.yaml`` (an empty dict when there is no saved config)."""
    if not saved.is_file():
        return {}
    old = _flat(yaml.safe_load(saved.read_text()) or {})
    new = _flat(yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False)))
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k) and k != "run.allow_config_change"}


class TrainSession:
    """``cfg`` has sections ``model`` (ModelConfig), ``optim`` (OptimConfig) and ``run`` (RunConfig)."""

    def __init__(self, cfg, *, total_steps: int, desc: str, tokenizer=None):
        self.cfg = cfg
        self.out = Path(cfg.run.out)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg)
        self.pad = pad_id(self.tokenizer)
        self.world = init_distributed(None if cfg.run.device == "auto" else cfg.run.device)
        try:
            self._start(cfg, total_steps, desc)
        except BaseException:
            shutdown()
            raise

    def _start(self, cfg, total_steps: int, desc: str) -> None:
        torch.manual_seed(cfg.run.seed)
        self.total_steps = total_steps
        self.checkpoints = Checkpointer(self.out / "checkpoints", self.world, keep_last=cfg.run.keep_last)
        latest = self.checkpoints.latest()
        changes = config_changes(self.out / "config.yaml", cfg) if latest is not None else {}
        refused = {k: v for k, v in changes.items() if k not in RESUME_MAY_CHANGE}
        if refused and not cfg.run.allow_config_change:
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
            raise ConfigError(str(self.out / "config.yaml"), ", ".join(refused),
                              f"the run in {self.out} was started with other settings ({listed}); resuming would "
                              "mix them. Rerun with the original settings, choose a new run.out, or set "
                              "run.allow_config_change=true to resume with the new ones")
        self.schedule_changes: list[dict] = []
        schedule_warning = None
        if latest is not None:
            schedule_warning = self._schedule_warning(latest, self.checkpoints.trainer_state(latest), changes)
        mixed = cfg.model.mixed_precision
        self.mixed_precision = self.world.device.type == "cuda" if mixed is None else mixed
        self.model = self._build(activation_checkpointing=cfg.model.activation_checkpointing)
        self.optimizer, self.scheduler = build_optimizer(self.model, cfg.optim, total_steps)
        self.step, self.state = 0, {}
        if latest is not None:
            self.state = self.checkpoints.load(latest, self.model, self.optimizer)
            self.step = self.state["step"]
            self.scheduler.load_state_dict(self.state["scheduler"])
        if self.world.is_main:
            if latest is not None:
                note = "config unchanged" if not changes else "config changed: " + "; ".join(
                    f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
                print(f"resuming {self.out} from {latest.name} ({note})", flush=True)
            if schedule_warning is not None:
                print(f"warning: {schedule_warning}", file=sys.stderr, flush=True)
            if changes:  # keep the settings the earlier steps ran with
                (self.out / f"config.before-step-{self.step:08d}.yaml").write_text(
                    (self.out / "config.yaml").read_text())
            save_config(cfg, self.out / "config.yaml")
        self.logger = RunLogger(self.out, self.world, total_steps, start_step=self.step,
                                tensorboard=cfg.run.tensorboard, desc=desc)
        self.resumed_from = latest

    def _schedule_warning(self, latest: Path, saved: dict, changes: dict[str, tuple]) -> str | None:
        """What resuming ``latest`` does to the learning-rate schedule, which spans the run's total steps: a new
        run.max_steps or data.epochs (or data of another size) moves the rates of the remaining steps. A move
        is recorded in ``schedule_changes`` (saved in every later checkpoint) and returned as the warning to
        print; None when the rates stay. The saved total is compared, since the scheduler keeps no length."""
        old = saved.get("total_steps")
        self.schedule_changes = list(saved.get("schedule_changes", []))
        if old is None:
            return (f"{latest} does not record the length of its learning-rate schedule (saved before checkpoints "
                    "recorded it): whether this resume changes it is not checked")
        # The resumed step runs at the rate restored with the optimizer; the schedule sets the ones after it.
        first = first_changed_step(self.cfg.optim, old, self.total_steps, saved["step"] + 1)
        if first is None:
            return None
        self.schedule_changes.append({"step": saved["step"], "total_steps": [old, self.total_steps]})
        causes = "; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()) or "same settings, other data"
        return (f"the learning-rate schedule was built for {old} optimizer steps and now spans {self.total_steps} "
                f"({causes}): from step {first + 1} on, the learning rates are not the ones the run started with "
                f"(recorded as schedule_changes in {self.checkpoints.root}/step_*/trainer.json)")

    def _build(self, *, activation_checkpointing: bool) -> FusedHeadLM:
        m = self.cfg.model
        lm = load_causal_lm(m.path, trust_remote_code=m.trust_remote_code,
                            activation_checkpointing=activation_checkpointing, liger=m.liger)
        if m.attn_implementation != "sdpa":
            lm.set_attn_implementation(m.attn_implementation)
        return shard(FusedHeadLM(lm), self.world, mixed_precision=self.mixed_precision)

    def build_reference(self) -> FusedHeadLM:
        """A frozen copy of the initial model (``model.path``), built like the policy: same attention
        implementation, Liger layers and mixed precision (no activation checkpointing: it never trains)."""
        reference = self._build(activation_checkpointing=False).eval()
        for p in reference.parameters():
            p.requires_grad_(False)
        return reference

    def __enter__(self) -> "TrainSession":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(clean=exc_type is None)

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps

    def passes(self, local: int) -> int:
        """The number of forward(/backward) passes every rank makes: the most any rank needs (FSDP
        collectives need the same count on every rank; ranks with less work make idle passes)."""
        t = torch.tensor(local)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t)

    def batch(self, rows: list[list[Example]] | None) -> dict:
        """Model inputs for one micro-batch of (packed) rows, on this rank's device, with the configured
        attention implementation; ``None`` or empty gives the idle-rank batch (one pad token, no loss)."""
        rows = rows or [[Example([self.pad], [0])]]
        inputs = batch_inputs(rows, self.pad, self.cfg.model.attn_implementation)
        return {k: (v.to(self.world.device) if v is not None else None) for k, v in inputs.items()}

    def sync_gradients(self, enabled: bool) -> None:
        """Reduce-scatter gradients only on the last micro-batch of an accumulation (saves traffic)."""
        self.model.set_requires_gradient_sync(enabled)

    def optimizer_step(self, grad_scale: float = 1.0) -> dict:
        """Scale the gradients (a loss normaliser known only after the backward passes), clip, then step,
        unless the loss or a gradient is not finite: then the step is skipped, the gradients dropped, and
        the weights stay as they were (the schedule still advances)."""
        if grad_scale != 1.0:
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.mul_(grad_scale)
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

    def save_due(self, since: int | None = None) -> bool:
        """Whether a multiple of ``run.save_every`` lies in (since, step] (default since = step - 1: exactly at
        the multiples). A trainer that takes several optimizer steps between the points where it can save
        (GRPO: all updates of one rollout step) passes the step it started from, so a multiple inside those
        updates saves at the next such point instead of being skipped."""
        every = self.cfg.run.save_every
        since = self.step - 1 if since is None else since
        return every > 0 and self.step // every > since // every

    def maybe_save(self, trainer_state: dict, *, force: bool = False, since: int | None = None,
                   rank_state: dict | None = None) -> None:
        """Save when ``save_due(since)`` (or ``force``); ``rank_state``: see ``Checkpointer.save``."""
        if force or self.save_due(since):
            state = dict(trainer_state, scheduler=self.scheduler.state_dict(), total_steps=self.total_steps,
                         schedule_changes=self.schedule_changes)
            self.checkpoints.save(self.step, self.model, self.optimizer, state, rank_state)

    def finish(self, trainer_state: dict) -> Path | None:
        """Final checkpoint (if the last step was not just saved) and the transformers export."""
        latest = self.checkpoints.latest()
        if latest is None or latest.name != f"step_{self.step:08d}":
            self.maybe_save(trainer_state, force=True)
        exported = None
        if self.cfg.run.export:
            exported = export_hf(self.model, self.out / "final", self.cfg.model.path, self.world)
        return exported

    def close(self, clean: bool = True) -> None:
        """Close the logger and leave the process group (also after an error: use ``with``, which passes
        ``clean=False`` then, so a failed rank does not wait for peers that may never come)."""
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.close()
        shutdown(barrier=clean)
