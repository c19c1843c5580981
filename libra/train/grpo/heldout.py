"""Step 7 of a rollout step: held-out judging during the run (the ``eval`` section) on the rollout engine,
which already holds the current weights, so an evaluation needs no second model or weight export."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from libra.config import ConfigError
from libra.rollout.types import SamplingParams
from libra.train.grpo.config import GRPOConfig
from libra.train.session import TrainSession


class HeldOutEval:
    """The ``eval`` section at work: the bench rows loaded (and the template checked) before the engine
    starts, then ``libra.eval.libra_bench.evaluate`` on the rollout engine at the steps it asks for."""

    def __init__(self, session: TrainSession, cfg: GRPOConfig, updates_per_step: int):
        self.cfg, self.session, self.per_step = cfg, session, updates_per_step
        self.enabled = bool(cfg.eval.bench) and cfg.eval.every > 0
        self.rows: list[dict] = []
        if self.enabled and session.world.is_main:
            from libra.data.bench import load_bench
            from libra.eval.libra_bench import check_template

            self.rows = load_bench(cfg.eval.bench)
            if not self.rows:
                raise ConfigError(cfg.eval.bench, "eval.bench", "no judging rows")
            try:
                check_template(cfg.eval.template, self.rows)
            except ValueError as err:
                raise ConfigError("config", "eval.template", str(err)) from None
        run = {k: v for k, v in asdict(cfg).items() if k != "eval"}
        from libra.eval.rundir import content_key

        self.run_key = content_key(run)

    def due(self, *, first: bool = False) -> bool:
        """Before the first update (``first``), every ``every`` rollout steps, and at the end."""
        if not self.enabled:
            return False
        rollout_step = self.session.step // self.per_step
        return first or self.session.done or rollout_step % self.cfg.eval.every == 0

    def versions(self, rollout_steps: int) -> set[int]:
        """The policy versions (rollout steps learned) ``due`` asks for in a run of ``rollout_steps``:
        asynchronous GRPO evaluates each when its weights reach the engine."""
        if not self.enabled:
            return set()
        return {0, rollout_steps} | set(range(0, rollout_steps, self.cfg.eval.every))

    def __call__(self, engine, step: int | None = None) -> dict:
        """Rank 0 evaluates the weights ``engine`` holds, those of optimizer ``step`` (default the session's;
        the others go on to their next collective and wait there); returns the metrics for metrics.jsonl on
        rank 0, an empty dict elsewhere."""
        if not self.session.world.is_main:
            return {}
        from libra.eval.libra_bench import evaluate

        e = self.cfg.eval
        step = self.session.step if step is None else step
        params = SamplingParams(n=e.n, temperature=e.temperature, max_tokens=e.max_tokens, seed=self.cfg.run.seed)
        results = evaluate(self.rows, out=Path(self.cfg.run.out) / "evals" / f"step_{step:08d}", sampling=params,
                           model=self.cfg.model.path, engine=engine, template=e.template,
                           threshold=self.cfg.reward.threshold,  # "correct" as the reward reads a score
                           fingerprint=f"grpo-run:{self.run_key}:step:{step}", verdict_mode=e.verdict_mode,
                           progress=False, plots=False, quiet=True, name=f"step {step}", bench=e.bench,
                           settings={"eval": asdict(e), "step": step})
        m = results["metrics"]
        return {"eval_accuracy": m["accuracy"], "eval_average": m["average"], "eval_invalid": m["invalid_rate"]}
