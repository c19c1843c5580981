"""Per-step metrics: one JSON line per step (``metrics.jsonl``, diffable), tensorboard scalars, and a
progress bar on a terminal (``libra.progress``: timed lines in a log). Only rank 0 writes.

On resume the log is cut back to the checkpoint's step first, so the file always describes the run
that produced the current weights (steps redone after a crash appear once).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from libra.progress import progress_bar
from libra.train.dist import World


class RunLogger:
    def __init__(self, out: Path, world: World, total_steps: int, *, start_step: int = 0, tensorboard: bool = True,
                 desc: str = "train"):
        self.world, self.path = world, out / "metrics.jsonl"
        self.writer = self.bar = None
        if not world.is_main:
            return
        out.mkdir(parents=True, exist_ok=True)
        self._truncate_after(start_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step + 1)
        self.bar = progress_bar(total=total_steps, initial=start_step, desc=desc, unit="step")

    def _truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut off by the crash
        self.path.write_text("".join(f"{line}\n" for line in keep))

    def log(self, step: int, metrics: dict) -> None:
        if not self.world.is_main:
            return
        record = {"step": step, "time": time.time(), **metrics}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(key, value, step)
        shown = {k: metrics[k] for k in ("loss", "reward", "accuracy", "lr", "tokens_per_s") if k in metrics}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)  # the update shows them
        self.bar.update(max(step - self.bar.n, 0))  # an evaluation logged late carries an earlier step

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.bar is not None:
            self.bar.close()
