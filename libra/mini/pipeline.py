"""Libra-Mini: the whole Libra method on a CPU in minutes (``libra quickstart``).

    synthetic verifiable reasoning (column addition, source models of different skill)
      -> V2V: label with verify_answer, balance per source model, split by problem
      -> base model: SFT on non-judging data only (the reasoning task, and instructions whose answers come
         in a stated bracket format), so that, like a pretrained model, it follows an output format it is
         told about but has never seen a judgment
      -> judges: direct-verdict SFT, thinking SFT on rejection-sampled teacher judgments,
         RL-zero (GRPO from base with a prompt that invites thinking), SFT+RL (GRPO from thinking SFT);
         the RL data mixes judging rows with reasoning problems, as in the paper
      -> every variant, and the teacher itself, evaluated on the held-out Mini Libra Bench; the RL runs
         are also evaluated at checkpoints (accuracy against RL step, the paper's Fig. 3a)
      -> downstream (the paper's section 6): a weak reasoning policy samples solutions to unlabelled
         problems, each judge labels them, DPO on the judge's pairs, pass@1 on other held-out problems
      -> with ``--judge-rl``: GRPO of that policy on the same unlabelled problems rewarded by the RL judge,
         beside the gold rule reward (``judge_rl.py``)

Every stage writes its outputs and a ``done`` marker holding the key of its inputs (``stages.py``), so an
interrupted run resumes where it stopped and a run with another configuration rebuilds what changed. The
trainers run in this process through the entry point of ``libra train`` (FSDP2, the fused kernels); one
engine (vLLM by default) serves both GRPO runs and every evaluation, moving between models by weight sync.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

from libra.data.jsonl import write_json, write_jsonl
from libra.data.sources import Problem, Response
from libra.mini import MINI_TEMPLATE, THINK_TEMPLATE
from libra.mini.arith import (
    SOURCE_MODELS,
    answer_width,
    comparison_instruction,
    digit_variant,
    extraction_instruction,
    make_problems,
    near_miss,
    property_instruction,
    respond,
    worked_solution,
)
from libra.mini.runs import (
    TEACHER,
    VARIANTS,
    SharedEngine,
    eval_sampling,
    grpo,
    judge_bench,
    read_rows,
    reasoning_prompt,
    sft,
    template_of,
)
from libra.mini.stages import Stages, code_digest
from libra.mini.teacher import ThinkingTeacher, direct_verdict

# The source model whose solutions the downstream policy imitates: a reasoner that is often wrong, as the
# paper's R1-distilled starting policies are (55% / 39%), whatever the seed.
POLICY_SOURCE = "average"


@dataclass(frozen=True)
class MiniConfig:
    """Sizes of the mini setup. ``fast()`` is the CI variant (every stage, fewer steps)."""

    seed: int = 0
    train_problems: int = 3000  # distinct problems teach the base to add, not to memorise
    bench_problems: int = 150
    downstream_problems: int = 100  # each of the two downstream sets: judge-labelled (DPO) and test
    responses_per_model: int = 2
    digits: tuple[int, ...] = (2,)  # one operand length: columns sit at fixed offsets, which a tiny model finds
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 4
    base_epochs: int = 5
    reasoning_problems: int = 3000  # worked solutions in the base's data
    # Digit-by-digit comparison instructions in the base's data (arith.comparison_instruction), a quarter of
    # them with differences drawn in every column (arith.digit_variant): the practice a judge's check needs
    # to copy and compare digits (the sizes tried: docs/libra-mini.md).
    comparison_rows: int = 6000
    skill_rows: int = 2000  # extraction and property instructions in the base's data, half each
    judge_rows: int = 2000  # judging rows per SFT variant (mixed with non-judging rows)
    reasoning_rows: int = 300
    judge_epochs: int = 8
    judge_lr: float = 3e-3
    teacher_error_rate: float = 0.2
    teacher_skim_rate: float = 0.5  # judgments that trust the response unchecked (see teacher.skim_text)
    teacher_samples: int = 2
    # SFT+RL steps, chosen where the training reward (training prompts, not the bench) levels off and most
    # groups already agree on every sample (docs/libra-mini.md).
    grpo_steps: int = 20
    grpo_zero_steps: int = 20  # RL-zero: settled on one verdict by step 15; more steps only cost time
    grpo_lr: float = 2e-4  # SFT+RL
    grpo_zero_lr: float = 3e-4  # RL-zero (no KL; it first has to find the verdict format)
    grpo_prompts: int = 32
    grpo_n: int = 8
    grpo_temperature: float = 1.0
    grpo_reasoning_share: float = 0.2  # share of reasoning problems in the RL data (the rest: judging rows)
    grpo_evals: int = 4  # held-out evaluations during each RL run after the one at step 0, evenly spaced (Fig. 3a)
    max_judgment_tokens: int = 192  # the teacher's judgments are ~90 tokens
    eval_temperature: float = 0.6  # the paper's for thinking judges (direct verdicts: greedy)
    eval_samples: int = 2  # judgments per held-out row for thinking judges
    length_penalty_from: int = 128  # L_exp: as in the paper, only judgments far beyond the usual length pay
    policy_epochs: int = 3  # the downstream policy: SFT on an often-wrong solver's solutions
    policy_temperature: float = 0.7  # sampling temperature of the policy's solutions (labelled and tested)
    policy_samples: int = 8  # samples per problem, for the judges to label and for pass@1
    # DPO (beta 0.01, the paper's) with the chosen responses' NLL added (``dpo_nll``, RPO: plain DPO lowered
    # the chosen responses' log-probs and with them pass@1); lr and epochs chosen on the labelled problems'
    # own pass@1 with gold pairs, never on the test problems (the sweep: docs/libra-mini.md).
    dpo_epochs: int = 8
    dpo_lr: float = 3e-4
    dpo_nll: float = 1.0
    judge_rl: bool = False  # the judge-rewarded policy RL stage (``--judge-rl``, libra/mini/judge_rl.py)
    judge_rl_steps: int = 20
    judge_rl_lr: float = 2e-4
    engine: str = "vllm"

    @classmethod
    def tour(cls) -> "MiniConfig":
        """The quick tour (``make quickstart``): every stage, at the size that fits the 2-core budget."""
        return cls(bench_problems=100, downstream_problems=50, base_epochs=4, reasoning_problems=2500,
                   comparison_rows=4000, skill_rows=1000, judge_rows=1000, reasoning_rows=200, judge_epochs=6,
                   grpo_steps=8, grpo_zero_steps=6, grpo_prompts=16, grpo_evals=1, policy_samples=4)

    @classmethod
    def fast(cls) -> "MiniConfig":
        """Every stage with a few steps (the CI test; numbers not meaningful)."""
        return cls(train_problems=320, bench_problems=16, downstream_problems=12, base_epochs=2, skill_rows=100,
                   comparison_rows=100, reasoning_problems=200, judge_rows=200, reasoning_rows=50, judge_epochs=1,
                   grpo_steps=2, grpo_zero_steps=2, grpo_prompts=8, grpo_n=4, grpo_evals=2, policy_samples=2,
                   dpo_epochs=1, judge_rl_steps=2)

    def pick(self, *names: str) -> dict:
        """The named settings, for a stage key (a stage is keyed on what it reads, not on everything)."""
        known = {f.name for f in fields(self)}
        missing = [n for n in names if n not in known]
        if missing:
            raise KeyError(f"unknown MiniConfig fields {missing}")
        return {n: getattr(self, n) for n in names}


@dataclass(frozen=True)
class Preset:
    """A size of the Mini: its configuration, the wall time a run of it is held to on 2 cores, and what a run
    of that size can show (the first paragraph of its report)."""

    config: MiniConfig
    budget_s: float
    scope: str


PRESETS = {
    "full": Preset(MiniConfig(), 1500, "Full size (`libra reproduce` runs it once per seed): the size whose "
                   "numbers the Libra-Mini results are quoted at."),
    "tour": Preset(MiniConfig.tour(), 600, "Quick tour (`make quickstart`): every stage of the method at a size "
                   "that runs in 10 minutes on 2 cores: a smaller base training set and fewer base epochs, half the "
                   "judging data, 6 / 8 GRPO steps of 16 prompts, a 100-problem bench, 50-problem downstream sets "
                   "with 4 samples each. At this size the tiny judges do not learn to check reliably (see the "
                   "line-by-line check below), so the claims that rest on checking (thinking beats direct, RL "
                   "beats its SFT start and the teacher, judge quality downstream) are not expected to be shown "
                   "here; `make reproduce` runs the full size, where they are measured, on three seeds."),
    "fast": Preset(MiniConfig.fast(), 600, "Smoke size (`--fast`, the CI test): every stage with a few steps; "
                   "the numbers say nothing about the method."),
}


def build_data(cfg: MiniConfig, folder: Path) -> None:
    """Problems, source-model responses, V2V labels and balance, and the split by problem: the held-out
    bench, two downstream sets (judge-labelled for DPO, test for pass@1) and the training problems."""
    from libra.data.v2v import build
    from libra.verify import extract_answer, strip_thinking, verify_many

    rng = random.Random(cfg.seed)
    d = cfg.downstream_problems
    problems = make_problems(cfg.train_problems + cfg.bench_problems + 2 * d, digits=cfg.digits, seed=cfg.seed)
    bench, dpo = problems[:cfg.bench_problems], problems[cfg.bench_problems:cfg.bench_problems + d]
    test, train = problems[cfg.bench_problems + d:cfg.bench_problems + 2 * d], problems[cfg.bench_problems + 2 * d:]
    split = {**{p.id: "bench" for p in bench}, **{p.id: "train" for p in train}}
    judged = bench + train
    as_problems = [Problem(split[p.id], p.id, p.question, p.answer, None) for p in judged]
    responses = [Response(model.name, p.question, respond(model, p, rng), k, None, f"mini:{p.id}")
                 for p in judged for model in SOURCE_MODELS for k in range(cfg.responses_per_model)]
    result = build(as_problems, responses, strip_thinking=strip_thinking, verify_many=verify_many, seed=cfg.seed,
                   progress=False)
    for subset in ("train", "bench"):
        write_jsonl(folder / f"{subset}.jsonl", [r for r in result.rows if r["subset"] == subset])
    write_jsonl(folder / "reasoning.jsonl", [{"prompt": reasoning_prompt(p.question), "response": worked_solution(p)}
                                              for p in train[:cfg.reasoning_problems]])
    skills = []
    for _ in range(cfg.comparison_rows):
        p = rng.choice(train)
        r = rng.random()
        shown = p.answer if r < 0.5 else near_miss(p.answer, rng) if r < 0.75 else digit_variant(
            p.answer, answer_width(p.a, p.b), rng)
        skills.append(comparison_instruction(p.answer, shown, answer_width(p.a, p.b), rng))
    for p in rng.sample(train, min(cfg.skill_rows // 2, len(train))):
        solution = respond(rng.choice(SOURCE_MODELS), p, rng)
        skills.append(extraction_instruction(solution, extract_answer(solution)))
    for p in rng.sample(train, min(cfg.skill_rows // 2, len(train))):
        solution = respond(rng.choice(SOURCE_MODELS), p, rng)
        skills.append(property_instruction(solution, extract_answer(solution), rng))
    rng.shuffle(skills)
    write_jsonl(folder / "skills.jsonl", skills)
    for name, subset in (("downstream-dpo", dpo), ("downstream-test", test), ("rl-reasoning", train)):
        write_jsonl(folder / f"{name}.jsonl", [{"id": p.id, "task": "reasoning", "question": p.question,
                                                "answer": p.answer} for p in subset])
    write_json(folder / "stats.json", result.stats)
    # The downstream policy's data: the "average" source model's solutions, slips included (last, so the
    # draws above do not depend on it).
    imitated = next(m for m in SOURCE_MODELS if m.name == POLICY_SOURCE)
    write_jsonl(folder / "policy.jsonl", [
        {"prompt": reasoning_prompt(p.question), "response": respond(imitated, p, rng)}
        for p in train[:cfg.reasoning_problems]])


def build_model(cfg: MiniConfig, data: Path, folder: Path) -> None:
    """A tiny Qwen2 and a tokenizer trained on the domain's texts (digits split, as Qwen's are)."""
    from libra.models.tiny import TinyConfig, save_tiny

    texts = [r["response"] for r in read_rows(data / "reasoning.jsonl")]
    texts += [r["prompt"] + "\n" + r["response"] for r in read_rows(data / "skills.jsonl")]
    texts += [r["response"] for r in read_rows(data / "train.jsonl")]
    config = TinyConfig(vocab_size=384, hidden_size=cfg.hidden_size, intermediate_size=2 * cfg.hidden_size,
                        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
                        max_position_embeddings=1024, seed=cfg.seed)
    templates = [Path(t).read_text() for t in (MINI_TEMPLATE, THINK_TEMPLATE)]
    save_tiny(folder / "model", config, texts=texts + templates, split_digits=True)


def build_base_data(data: Path, folder: Path) -> None:
    """The base model's non-judging data: the reasoning task and the bracket-format instructions."""
    write_jsonl(folder / "rows.jsonl", read_rows(data / "reasoning.jsonl") + read_rows(data / "skills.jsonl"))


def _judge_prompt(row: dict, template: str = MINI_TEMPLATE) -> str:
    from libra.judge import render

    return render(template, question=row["question"], response=row["response"])


def build_judging_data(cfg: MiniConfig, data: Path, model: Path, folder: Path) -> None:
    """Direct-verdict rows (the label as a bare verdict) and thinking rows (teacher judgments that agree
    with the label: rejection sampling), each mixed with non-judging rows so the skills stay; and the RL
    set, judging rows mixed with reasoning problems (paper section 4.3)."""
    from transformers import AutoTokenizer

    from libra.rollout.types import SamplingParams
    from libra.train.rejection import rejection_sample

    rng = random.Random(cfg.seed)
    rows = read_rows(data / "train.jsonl")
    sft_rows = rng.sample(rows, min(cfg.judge_rows, len(rows)))
    keep = (read_rows(data / "reasoning.jsonl")[:cfg.reasoning_rows]
            + read_rows(data / "skills.jsonl")[:cfg.reasoning_rows])
    write_jsonl(folder / "direct.jsonl", [{"prompt": _judge_prompt(r), "response": direct_verdict(r["label"])}
                                          for r in sft_rows] + keep)
    teacher = ThinkingTeacher(AutoTokenizer.from_pretrained(model), error_rate=cfg.teacher_error_rate,
                              skim_rate=cfg.teacher_skim_rate)
    params = SamplingParams(n=cfg.teacher_samples, temperature=1.0, max_tokens=cfg.max_judgment_tokens, seed=cfg.seed)
    kept, stats = rejection_sample(sft_rows, out=folder / "rejection.jsonl", sampling=params, model="thinking-teacher",
                                   engine=teacher, template=MINI_TEMPLATE, keep=1, progress=False,
                                   fingerprint=f"thinking-teacher:{cfg.teacher_error_rate}:{cfg.teacher_skim_rate}")
    write_jsonl(folder / "thinking.jsonl", kept + keep)
    write_json(folder / "rejection_stats.json", stats)
    judging = [{**r, "task": "pointwise"} for r in rows]
    reasoning = read_rows(data / "rl-reasoning.jsonl")
    share = cfg.grpo_reasoning_share
    n_reasoning = min(len(reasoning), round(len(judging) * share / (1 - share))) if share > 0 else 0
    write_jsonl(folder / "rl.jsonl", judging + rng.sample(reasoning, n_reasoning))


def _grpo(cfg: MiniConfig, model: Path, rows: Path, bench: Path, template: str, out: Path, kl: float, lr: float,
          steps: int, engines: SharedEngine) -> None:
    """``steps`` of GRPO from ``model`` (the paper's recipe at Mini scale) on the shared engine, evaluating
    ``bench`` at step 0 and ``grpo_evals`` times evenly spaced after it (the last at the end)."""
    every = max(1, steps // cfg.grpo_evals) if cfg.grpo_evals else 0
    evals = dict(bench=str(bench), template=template, every=every, max_tokens=cfg.max_judgment_tokens,
                 temperature=cfg.eval_temperature, n=cfg.eval_samples) if every else {}
    grpo(cfg, model, rows, out, engines, task="pointwise", max_tokens=cfg.max_judgment_tokens,
         l_exp=cfg.length_penalty_from, kl=kl, lr=lr, steps=steps, template=template, evals=evals)


# Evaluations the GRPO runs already made with the final evaluation's settings (prompt, sampling, seed, the
# same weights): (variant, GRPO stage, which of its held-out evaluations): the first is at step 0, before
# any update, the last at the end. Their outputs are byte-identical to a fresh evaluation (checked on a
# full run), so the final evaluation copies them instead of judging the bench again.
FROM_RL = {"base": ("rl-zero", 0), "rl-zero": ("rl-zero", -1), "thinking-sft": ("sft-rl", 0), "sft-rl": ("sft-rl", -1)}


def evaluate(cfg: MiniConfig, models: dict[str, Path], bench: Path, folder: Path, engines: SharedEngine,
             out: Path) -> None:
    """Every variant on the held-out bench with the same harness, then the thinking teacher (a program
    behind the engine interface), as the paper lists DeepSeek-R1 beside its judges. Variants whose
    evaluation a GRPO run of ``out`` already made (``FROM_RL``) are copied from it."""
    import shutil

    from transformers import AutoTokenizer

    for name, path in models.items():
        rl = FROM_RL.get(name)
        done = sorted((out / rl[0] / "run" / "evals").glob("step_*")) if rl and cfg.grpo_evals else []
        if done:
            shutil.copytree(done[rl[1]], folder / name)
            continue
        temperature, n = eval_sampling(name, cfg.eval_temperature, cfg.eval_samples)
        judge_bench(engines.use(path), path, bench, template_of(name), cfg.max_judgment_tokens,
                    folder / name, seed=cfg.seed, temperature=temperature, n=n)
    teacher = ThinkingTeacher(AutoTokenizer.from_pretrained(models["base"]), error_rate=cfg.teacher_error_rate,
                              skim_rate=cfg.teacher_skim_rate)
    temperature, n = eval_sampling(TEACHER, cfg.eval_temperature, cfg.eval_samples)
    judge_bench(teacher, models["base"], bench, MINI_TEMPLATE, cfg.max_judgment_tokens, folder / TEACHER,
                fingerprint=f"thinking-teacher:{cfg.teacher_error_rate}:{cfg.teacher_skim_rate}", seed=cfg.seed,
                temperature=temperature, n=n)


def run(out: Path, cfg: MiniConfig, budget_s: float, scope: str = "") -> dict:
    """Every stage into ``out`` (reusing those built with the same key), then the report; ``budget_s`` is the
    wall time the run is held to and ``scope`` what a run of its size can show (both go into the report)."""
    from libra.mini.downstream import downstream, train_policy
    from libra.mini.judge_rl import judge_rl
    from libra.mini.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", asdict(cfg))
    start = time.perf_counter()
    import libra
    import libra_kernels

    code = code_digest(Path(libra.__file__).parent, Path(libra_kernels.__file__).parent)
    stages = Stages(out, 11 + cfg.judge_rl, code=code)
    c = cfg.pick
    data = stages.run("data", lambda f: build_data(cfg, f),
                      c("seed", "train_problems", "bench_problems", "downstream_problems", "responses_per_model",
                        "digits", "reasoning_problems", "skill_rows", "comparison_rows"))
    model = stages.run("model", lambda f: build_model(cfg, data, f),
                       c("seed", "hidden_size", "layers", "heads", "kv_heads"), ("data",)) / "model"

    def trained(name: str, fn: Callable[[Path], None], settings: dict, inputs: tuple[str, ...]) -> Path:
        return stages.run(name, lambda f: fn(f / "run"), settings, inputs) / "run" / "final"

    def base_sft(f: Path) -> None:
        build_base_data(data, f.parent)
        sft(model, f.parent / "rows.jsonl", f, cfg.base_epochs, 256, 5e-3)

    base = trained("base-sft", base_sft, c("base_epochs"), ("data", "model"))
    judging = stages.run("judging-data", lambda f: build_judging_data(cfg, data, base, f),
                         c("seed", "judge_rows", "reasoning_rows", "teacher_error_rate", "teacher_skim_rate",
                           "teacher_samples", "max_judgment_tokens", "grpo_reasoning_share"), ("data", "base-sft"))
    sft_settings = c("judge_epochs", "judge_lr")
    direct = trained("direct-sft", lambda f: sft(base, judging / "direct.jsonl", f, cfg.judge_epochs, 384,
                                                  cfg.judge_lr), sft_settings, ("base-sft", "judging-data"))
    thinking = trained("thinking-sft", lambda f: sft(base, judging / "thinking.jsonl", f, cfg.judge_epochs, 384,
                                                      cfg.judge_lr), sft_settings, ("base-sft", "judging-data"))
    grpo_settings = c("seed", "grpo_steps", "grpo_zero_steps", "grpo_lr", "grpo_zero_lr", "grpo_prompts", "grpo_n",
                      "grpo_temperature", "grpo_evals", "max_judgment_tokens", "length_penalty_from",
                      "eval_temperature", "eval_samples", "engine")
    bench = data / "bench.jsonl"
    rl_rows = judging / "rl.jsonl"
    engines = SharedEngine(cfg.engine, base, cfg.seed)
    try:
        rl_zero = trained("rl-zero", lambda f: _grpo(cfg, base, rl_rows, bench, THINK_TEMPLATE, f, kl=0.0,
                                                     lr=cfg.grpo_zero_lr, steps=cfg.grpo_zero_steps, engines=engines),
                          grpo_settings, ("data", "base-sft", "judging-data"))
        sft_rl = trained("sft-rl", lambda f: _grpo(cfg, thinking, rl_rows, bench, MINI_TEMPLATE, f, kl=1e-3,
                                                   lr=cfg.grpo_lr, steps=cfg.grpo_steps, engines=engines),
                         grpo_settings, ("data", "judging-data", "thinking-sft"))
        models = dict(zip(VARIANTS, (base, direct, thinking, rl_zero, sft_rl)))
        judges = ("base-sft", "direct-sft", "thinking-sft", "rl-zero", "sft-rl")
        stages.run("eval", lambda f: evaluate(cfg, models, bench, f, engines, out),
                   c("seed", "max_judgment_tokens", "teacher_error_rate", "teacher_skim_rate", "eval_temperature",
                     "eval_samples", "engine"), ("data",) + judges)
        policy = trained("policy-sft", lambda f: train_policy(cfg, model, data, f), c("policy_epochs"),
                         ("data", "model"))
        stages.run("downstream", lambda f: downstream(cfg, models, policy, data, f, engines),
                   c("seed", "policy_samples", "policy_temperature", "dpo_epochs", "dpo_lr", "dpo_nll",
                     "max_judgment_tokens",
                     "engine"), ("data", "policy-sft") + judges)
        if cfg.judge_rl:
            stages.run("judge-rl", lambda f: judge_rl(cfg, policy, sft_rl, data, f, engines),
                       c("seed", "judge_rl_steps", "judge_rl_lr", "grpo_prompts", "grpo_n", "grpo_temperature",
                         "policy_samples", "policy_temperature", "max_judgment_tokens", "engine"),
                       ("data", "policy-sft", "sft-rl"))
    finally:
        engines.close()
    return write_report(out, cfg, time.perf_counter() - start, stages, budget_s, scope)
