"""What the Libra-Mini stages share: the judges' names and prompts, a trainer run in this process, one
evaluation engine for every model of a run, and judging a bench on it. Kept apart from ``pipeline`` (the
stages) so that ``downstream`` and ``report`` use these without importing the pipeline back.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from libra.judge.templates import REASONING_PROMPT
from libra.mini import MINI_TEMPLATE, THINK_TEMPLATE

VARIANTS = ("base", "direct-sft", "thinking-sft", "rl-zero", "sft-rl")
TEACHER = "teacher"
# The prompt each variant judges with: RL-zero was trained on the thinking-inviting prompt, and the base is
# scored on that prompt too (the start RL-zero is compared with); the others read the mini prompt.
TEMPLATES = {"base": THINK_TEMPLATE, "rl-zero": THINK_TEMPLATE}


def template_of(variant: str) -> str:
    """The judging prompt ``variant`` is trained on and evaluated with."""
    return TEMPLATES.get(variant, MINI_TEMPLATE)


def train_in_process(kind: str, cfg, engine_factory=None) -> None:
    """Trainer ``kind`` on the config dataclass ``cfg`` in this process, through the entry point that
    ``libra train`` uses (``libra.train.commands.run_trainer``: the same checks and trainer, without the ~6 s
    start-up of a process per stage). ``engine_factory`` (GRPO) lends the rollout engine."""
    from libra.train.commands import run_trainer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hook = sys.excepthook  # each process group wraps it with a "[rank0]:" prefix: one wrap per stage otherwise
    try:
        run_trainer(kind, cfg, **({"engine_factory": engine_factory} if engine_factory else {}))
    finally:
        sys.excepthook = hook


def read_rows(path: Path) -> list[dict]:
    """The rows of a JSONL file the pipeline wrote itself (input from users goes through ``libra.data``)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def reasoning_prompt(question: str) -> str:
    """The reasoning prompt of pass@k evaluation and of the RL reasoning task, so the base learns the same."""
    return REASONING_PROMPT.replace("{question}", question)


def sft(model: Path, rows: Path, out: Path, epochs: int, seq_len: int, lr: float) -> None:
    """Supervised fine-tuning of ``model`` on ``rows`` (a cosine schedule down to a tenth of ``lr``)."""
    from libra.train.sft import SFTConfig

    cfg = SFTConfig()
    train_in_process("sft", replace(
        cfg, model=replace(cfg.model, path=str(model)),
        data=replace(cfg.data, train=str(rows), epochs=epochs, max_seq_len=seq_len),
        optim=replace(cfg.optim, lr=lr, min_lr=lr / 10),
        run=replace(cfg.run, global_batch_size=32, micro_batch_size=32, out=str(out), tensorboard=False)))


def grpo(cfg, model: Path, rows: Path, out: Path, engines: "SharedEngine", *, task: str, max_tokens: int, l_exp: int,
         kl: float, lr: float, steps: int, template: str | None = None, evals: dict | None = None,
         reward: dict | None = None) -> None:
    """``steps`` of GRPO from ``model`` on the shared engine with the Mini's sizes (``grpo_prompts`` prompts x
    ``grpo_n`` rollouts at ``grpo_temperature``, one optimizer step per rollout step, a constant ``lr``), the
    length penalty from ``l_exp`` up to ``max_tokens``; ``template`` (the judging prompt), ``evals`` (fields of
    the ``eval`` section: held-out evaluations) and ``reward`` (more ``reward`` fields: a judge reward) as given."""
    from libra.train.grpo import GRPOConfig

    base = GRPOConfig()
    data = replace(base.data, train=str(rows), task=task, prompts_per_step=cfg.grpo_prompts, epochs=100)
    train_in_process("grpo", replace(
        base, model=replace(base.model, path=str(model)),
        data=data if template is None else replace(data, template=template),
        rollout=replace(base.rollout, engine=cfg.engine, n=cfg.grpo_n, temperature=cfg.grpo_temperature,
                        max_tokens=max_tokens),
        reward=replace(base.reward, l_exp=l_exp, l_max=max_tokens, **(reward or {})),
        loss=replace(base.loss, kl_coef=kl), eval=replace(base.eval, **(evals or {})),
        optim=replace(base.optim, lr=lr, warmup_ratio=0.0),
        run=replace(base.run, global_batch_size=cfg.grpo_prompts, micro_batch_size=32, max_steps=steps,
                    seed=cfg.seed, out=str(out), tensorboard=False)), engine_factory=engines.lend(model))


class SharedEngine:
    """One engine for every model of the run (all share the tiny architecture), started on first use:
    ``use(path)`` loads a model's weights by weight sync instead of starting a new engine (~20 s each with
    vLLM), and ``lend(path)`` hands it to a GRPO run as its rollout engine."""

    def __init__(self, engine: str, first_model: Path, seed: int):
        self.kind, self.first_model, self.seed, self.engine, self.loaded = engine, first_model, seed, None, None

    def use(self, model: Path):
        from safetensors.torch import load_file

        from libra.rollout.factory import make_engine

        if self.engine is None:
            self.engine = make_engine(self.kind, str(self.first_model), seed=self.seed)
            self.loaded = self.first_model
        if model != self.loaded:
            self.engine.update_weights(load_file(model / "model.safetensors").items())
            self.loaded = model
        return self.engine

    def lend(self, model: Path):
        """A GRPO ``engine_factory``: the shared engine holding ``model``, which the trainer then updates in
        place (so afterwards no saved model is loaded) and may not close."""

        def factory(_cfg, _seed):
            engine = self.use(model)
            self.loaded = None
            return _Lent(engine)

        return factory

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


class _Lent:
    """An engine lent to a trainer: everything passes through except ``close`` (the owner closes it)."""

    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def close(self) -> None:
        """The pipeline's engine outlives the trainer: closing is the owner's job."""


def thinks(variant: str) -> bool:
    """Whether ``variant`` writes a thinking judgment (everything but the direct-verdict baseline)."""
    return variant != "direct-sft"


def eval_sampling(variant: str, temperature: float, samples: int) -> tuple[float, int]:
    """The paper's evaluation protocol (appendix: thinking models sampled at temperature 0.6, non-thinking
    ones greedy): ``(temperature, samples per row)`` for ``variant``. Several samples per row measure the
    judge's distribution rather than one draw (or the argmax, which hides how often a judge skims)."""
    return (temperature, samples) if thinks(variant) else (0.0, 1)


def judge_bench(engine, model: Path, bench: Path, template: str, max_tokens: int, out: Path,
                fingerprint: str | None = None, seed: int = 0, temperature: float = 0.0, n: int = 1) -> dict:
    """Libra Bench (``libra.eval.libra_bench.evaluate``) on ``engine``, which already holds ``model``'s weights:
    ``n`` judgments per row at ``temperature``, predictions.jsonl and results.json in ``out``; returns the
    metrics (accuracy over every judgment)."""
    from libra.data.bench import load_bench
    from libra.eval.libra_bench import evaluate
    from libra.rollout.types import SamplingParams

    params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
    results = evaluate(load_bench(str(bench)), out=out, sampling=params, model=str(model),
                       engine=engine, template=template, fingerprint=fingerprint, progress=False, plots=False,
                       quiet=True, bench=str(bench))
    return results["metrics"]
