"""What the Libra-Mini stages share: the judges' names and prompts, a trainer run in this process, one
evaluation engine for every model of a run, and judging a bench on it. Kept apart from ``pipeline`` (the
stages) so that ``downstream`` and ``report`` use these without importing the pipeline back.
"""

from __future__ import annotations

import json
import os
import sys
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


def train_in_process(kind: str, *overrides: str, engine_factory=None) -> None:
    """A trainer run in this process through the entry point of ``libra train KIND key=value ...``
    (``libra.train.commands.train``): the same config checks and trainer, without the ~6 s start-up of a
    process per stage. ``engine_factory`` (GRPO) lends the rollout engine."""
    from libra.train.commands import train

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hook = sys.excepthook  # each process group wraps it with a "[rank0]:" prefix: one wrap per stage otherwise
    try:
        train(kind, list(overrides), **({"engine_factory": engine_factory} if engine_factory else {}))
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
    train_in_process("sft", f"model.path={model}", f"data.train={rows}", f"data.epochs={epochs}",
                     f"data.max_seq_len={seq_len}", "run.global_batch_size=32", "run.micro_batch_size=32",
                     f"optim.lr={lr}", f"optim.min_lr={lr / 10}", f"run.out={out}", "run.tensorboard=false")


def grpo(cfg, model: Path, rows: Path, out: Path, engines: "SharedEngine", *, task: str, max_tokens: int, l_exp: int,
         kl: float, lr: float, steps: int, extra: tuple[str, ...] = ()) -> None:
    """``steps`` of GRPO from ``model`` on the shared engine with the Mini's sizes (``grpo_prompts`` prompts x
    ``grpo_n`` rollouts at ``grpo_temperature``, one optimizer step per rollout step, a constant ``lr``), the
    length penalty from ``l_exp`` up to ``max_tokens``; ``extra`` overrides (a template, held-out evaluations,
    a judge reward) go to ``libra train grpo`` as they are."""
    train_in_process(
        "grpo", f"model.path={model}", f"data.train={rows}", f"data.task={task}",
        f"data.prompts_per_step={cfg.grpo_prompts}", f"run.global_batch_size={cfg.grpo_prompts}",
        "run.micro_batch_size=32", f"rollout.engine={cfg.engine}", f"rollout.n={cfg.grpo_n}",
        f"rollout.temperature={cfg.grpo_temperature}", f"rollout.max_tokens={max_tokens}", f"reward.l_exp={l_exp}",
        f"reward.l_max={max_tokens}", f"loss.kl_coef={kl}", f"optim.lr={lr}", "optim.warmup_ratio=0",
        f"run.max_steps={steps}", "data.epochs=100", f"run.seed={cfg.seed}", f"run.out={out}", "run.tensorboard=false",
        *extra, engine_factory=engines.lend(model))


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
