"""Libra-Mini: the whole Libra method on a CPU in minutes (``libra quickstart``).

    synthetic verifiable reasoning (column addition, source models of different skill)
      -> V2V: label with verify_answer, balance per source model, split by problem
      -> base model: SFT on the reasoning task itself (non-judging data)
      -> judges: direct-verdict SFT, thinking SFT on rejection-sampled teacher judgments,
         RL-zero (GRPO from base), SFT+RL (GRPO from thinking SFT)
      -> every variant evaluated on the held-out Mini Libra Bench; report, JSON and plots

Every stage writes its outputs and a ``done`` marker into the run directory and is skipped when the
marker is there, so an interrupted run resumes where it stopped. The trainers run as subprocesses through
the real CLI (``python -m libra train ...``: FSDP2, the fused kernels, vLLM rollouts); the evaluation
starts one vLLM engine and moves between variants by weight sync instead of restarting it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from libra.data.jsonl import write_json, write_jsonl
from libra.data.sources import Problem, Response
from libra.mini import MINI_TEMPLATE
from libra.mini.arith import SOURCE_MODELS, make_problems, respond, worked_solution
from libra.mini.teacher import ThinkingTeacher, direct_verdict

TEMPLATE = str(MINI_TEMPLATE)
VARIANTS = ("base", "direct-sft", "thinking-sft", "rl-zero", "sft-rl")


@dataclass(frozen=True)
class MiniConfig:
    """Sizes of the mini setup. ``fast()`` is the CI variant (every stage, fewer steps)."""

    seed: int = 0
    train_problems: int = 3000  # distinct problems teach the base to add, not to memorise
    bench_problems: int = 50
    responses_per_model: int = 2
    digits: tuple[int, ...] = (2,)  # one operand length: columns sit at fixed offsets, which a tiny model finds
    hidden_size: int = 128
    layers: int = 2
    heads: int = 2
    base_epochs: int = 6
    judge_rows: int = 1200  # judging rows per SFT variant (mixed with reasoning_rows non-judging rows)
    reasoning_rows: int = 300
    judge_epochs: int = 6
    teacher_error_rate: float = 0.2
    teacher_samples: int = 2
    grpo_steps: int = 16
    grpo_lr: float = 5e-5
    grpo_prompts: int = 16
    grpo_n: int = 8
    max_judgment_tokens: int = 160  # the teacher's judgments are ~70 tokens
    length_penalty_from: int = 96  # L_exp: as in the paper, only judgments far beyond the usual length pay
    engine: str = "vllm"

    @classmethod
    def fast(cls) -> "MiniConfig":
        return cls(train_problems=320, bench_problems=16, base_epochs=2, judge_rows=200, reasoning_rows=50,
                   judge_epochs=1, grpo_steps=2, grpo_prompts=8, grpo_n=4)


class Stages:
    """Runs named stages in order, skipping finished ones, and prints where the run is."""

    def __init__(self, out: Path, total: int):
        self.out, self.total, self.index, self.start = out, total, 0, time.perf_counter()

    def run(self, name: str, fn: Callable[[Path], None]) -> Path:
        self.index += 1
        folder = self.out / name
        marker = folder / "done"
        head = f"[{self.index}/{self.total}] {name}"
        if marker.exists():
            print(f"{head}: done earlier, skipped", flush=True)
            return folder
        print(f"{head} ...", flush=True)
        tick = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        fn(folder)
        marker.write_text(f"{time.perf_counter() - tick:.1f}\n")
        print(f"{head}: {time.perf_counter() - tick:.1f} s (total {time.perf_counter() - self.start:.0f} s)",
              flush=True)
        return folder


def _cli(*args: str) -> None:
    """A trainer run through the real command line; its log goes to the terminal."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, "-m", "libra", *args], env=env)
    if done.returncode != 0:
        raise RuntimeError(f"`libra {' '.join(args[:2])}` failed with exit status {done.returncode}")


def build_data(cfg: MiniConfig, folder: Path) -> None:
    """Problems, source-model responses, V2V labels and balance, the train / held-out split by problem."""
    from libra.data.v2v import build
    from libra.verify import strip_thinking, verify_many

    rng = random.Random(cfg.seed)
    problems = make_problems(cfg.train_problems + cfg.bench_problems, digits=cfg.digits, seed=cfg.seed)
    split = {p.id: ("bench" if i < cfg.bench_problems else "train") for i, p in enumerate(problems)}
    as_problems = [Problem(split[p.id], p.id, p.question, p.answer, None) for p in problems]
    responses = [Response(model.name, p.question, respond(model, p, rng), k, None, f"mini:{p.id}")
                 for p in problems for model in SOURCE_MODELS for k in range(cfg.responses_per_model)]
    result = build(as_problems, responses, strip_thinking=strip_thinking, verify_many=verify_many, seed=cfg.seed,
                   progress=False)
    for subset in ("train", "bench"):
        write_jsonl(folder / f"{subset}.jsonl", [r for r in result.rows if r["subset"] == subset])
    write_jsonl(folder / "reasoning.jsonl", [{"prompt": p.question, "response": worked_solution(p)}
                                              for p in problems if split[p.id] == "train"])
    write_json(folder / "stats.json", result.stats)


def build_model(cfg: MiniConfig, data: Path, folder: Path) -> None:
    """A tiny Qwen2 and a tokenizer trained on the domain's texts (digits split, as Qwen's are)."""
    from libra.models.tiny import TinyConfig, save_tiny

    texts = [json.loads(line)["response"] for line in (data / "reasoning.jsonl").read_text().splitlines()]
    texts += [json.loads(line)["response"] for line in (data / "train.jsonl").read_text().splitlines()]
    config = TinyConfig(vocab_size=384, hidden_size=cfg.hidden_size, intermediate_size=2 * cfg.hidden_size,
                        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=1,
                        max_position_embeddings=1024, seed=cfg.seed)
    save_tiny(folder / "model", config, texts=texts + [Path(TEMPLATE).read_text()], split_digits=True)


def _judge_prompt(row: dict) -> str:
    from libra.judge import render

    return render(TEMPLATE, question=row["question"], response=row["response"])


def build_judging_sft(cfg: MiniConfig, data: Path, model: Path, folder: Path) -> None:
    """Direct-verdict rows (the label as a bare verdict) and thinking rows (teacher judgments that agree
    with the label: rejection sampling), each mixed with the non-judging reasoning rows."""
    from transformers import AutoTokenizer

    from libra.eval.generations import GenerationStore, Request, generate_resumable
    from libra.eval.libra_bench import score_records
    from libra.rollout.types import SamplingParams
    from libra.data.rejection import select

    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    rows = random.Random(cfg.seed).sample(rows, min(cfg.judge_rows, len(rows)))
    reasoning = [json.loads(line) for line in (data / "reasoning.jsonl").read_text().splitlines()]
    reasoning = reasoning[:cfg.reasoning_rows]
    prompts = [_judge_prompt(r) for r in rows]
    write_jsonl(folder / "direct.jsonl", [{"prompt": p, "response": direct_verdict(r["label"])}
                                          for p, r in zip(prompts, rows)] + reasoning)
    teacher = ThinkingTeacher(AutoTokenizer.from_pretrained(model), error_rate=cfg.teacher_error_rate)
    params = SamplingParams(n=cfg.teacher_samples, temperature=1.0, max_tokens=cfg.max_judgment_tokens, seed=cfg.seed)
    requests = [Request(r["id"], [{"role": "user", "content": p}]) for r, p in zip(rows, prompts)]
    records = generate_resumable(teacher, requests, params, GenerationStore(folder / "teacher.generations.jsonl"),
                                 template="pointwise_mini", model="thinking-teacher", progress=False)
    kept, stats = select(rows, score_records(rows, records, "pointwise", 2), records, prompts, keep=1,
                         drop_truncated=True)
    write_jsonl(folder / "thinking.jsonl", kept + reasoning)
    write_json(folder / "rejection_stats.json", stats)


def _sft(model: Path, rows: Path, out: Path, epochs: int, seq_len: int, lr: float) -> None:
    _cli("train", "sft", f"model.path={model}", f"data.train={rows}", f"data.epochs={epochs}",
         f"data.max_seq_len={seq_len}", "run.global_batch_size=32", "run.micro_batch_size=32", f"optim.lr={lr}",
         f"optim.min_lr={lr / 10}", f"run.out={out}", "run.tensorboard=false")


def _grpo(cfg: MiniConfig, model: Path, rows: Path, out: Path, kl: float) -> None:
    _cli("train", "grpo", f"model.path={model}", f"data.train={rows}", "data.task=pointwise",
         f"data.template={TEMPLATE}", f"data.prompts_per_step={cfg.grpo_prompts}",
         f"run.global_batch_size={cfg.grpo_prompts}", "run.micro_batch_size=32", f"rollout.engine={cfg.engine}",
         f"rollout.n={cfg.grpo_n}", f"rollout.max_tokens={cfg.max_judgment_tokens}",
         f"reward.l_exp={cfg.length_penalty_from}", f"reward.l_max={cfg.max_judgment_tokens}",
         f"loss.kl_coef={kl}", f"optim.lr={cfg.grpo_lr}", "optim.warmup_ratio=0", f"run.max_steps={cfg.grpo_steps}",
         "data.epochs=100", f"run.seed={cfg.seed}", f"run.out={out}", "run.tensorboard=false")


def evaluate(cfg: MiniConfig, models: dict[str, Path], bench: Path, folder: Path) -> None:
    """Every variant on the held-out bench through one vLLM engine, switching variants by weight sync."""
    from safetensors.torch import load_file

    from libra.cli import build_parser
    from libra.eval import libra_bench
    from libra.rollout.factory import make_engine

    engine = make_engine(cfg.engine, str(models["base"]), seed=cfg.seed)
    try:
        for name, path in models.items():
            engine.update_weights(load_file(path / "model.safetensors").items())
            args = build_parser().parse_args([
                "eval", "libra-bench", "--model", str(path), "--engine", cfg.engine, "--bench", str(bench),
                "--template", TEMPLATE, "--max-tokens", str(cfg.max_judgment_tokens), "--out", str(folder / name),
                "--no-progress"])
            if libra_bench.run(args, engine=engine) != 0:
                raise RuntimeError(f"evaluation of {name} failed")
    finally:
        engine.close()


def run(out: Path, cfg: MiniConfig) -> dict:
    from libra.mini.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", asdict(cfg))
    start = time.perf_counter()
    stages = Stages(out, 9)
    data = stages.run("data", lambda f: build_data(cfg, f))
    model = stages.run("model", lambda f: build_model(cfg, data, f)) / "model"
    train_rows = data / "train.jsonl"

    def trained(name: str, fn: Callable[[Path], None]) -> Path:
        return stages.run(name, lambda f: fn(f / "run")) / "run" / "final"

    base = trained("base-sft", lambda f: _sft(model, data / "reasoning.jsonl", f, cfg.base_epochs, 128, 5e-3))
    judging = stages.run("judging-data", lambda f: build_judging_sft(cfg, data, base, f))
    direct = trained("direct-sft", lambda f: _sft(base, judging / "direct.jsonl", f, cfg.judge_epochs, 384, 3e-3))
    thinking = trained("thinking-sft", lambda f: _sft(base, judging / "thinking.jsonl", f, cfg.judge_epochs, 384, 3e-3))
    rl_zero = trained("rl-zero", lambda f: _grpo(cfg, base, train_rows, f, kl=0.0))
    sft_rl = trained("sft-rl", lambda f: _grpo(cfg, thinking, train_rows, f, kl=1e-3))
    models = dict(zip(VARIANTS, (base, direct, thinking, rl_zero, sft_rl)))
    stages.run("eval", lambda f: evaluate(cfg, models, data / "bench.jsonl", f))
    return write_report(out, cfg, time.perf_counter() - start)
