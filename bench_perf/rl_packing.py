"""Packed, bucketed and padded RL passes: the GRPO update pass (and the log-prob pass) at a realistic length spread.

    python -m bench_perf.rl_packing [--quick] [--out PATH]

The same rollouts, the same model and the same loss; only the micro-batch layout differs:
* ``padded``: ``run.micro_batch_size`` rollouts per micro-batch, right-padded to the longest of the
  micro-batch (what a trainer without packing does; TRL pads to the longest of the whole generation
  batch, which costs more);
* ``packed``: rollouts packed first-fit-decreasing into micro-batches of at most
  ``run.max_tokens_per_micro_batch`` tokens, one row each, block-diagonal attention, no padding;
* ``bucketed``: the same budget as length-sorted padded rows (rows x longest <= budget), what
  ``run.rl_layout=auto`` picks with sdpa.
In both, only response-predicting positions reach the LM head (``libra.train.rl_batches``).

Lengths: prompts uniform in [PROMPT_MIN, PROMPT_MAX] tokens, responses log-normal (median RESPONSE_MEDIAN,
sigma RESPONSE_SIGMA) clipped to [8, RESPONSE_MAX], the long-tailed spread of sampled reasoning. Token ids are
random (the passes' cost does not depend on them). Each layout runs in a fresh worker: one warm-up update,
then ``reps`` timed log-prob passes and updates (median), and the peak memory growth of one update above
the RSS before it (``peak_growth_mb``: VmHWM after a reset). The JSON has per-layout numbers and the
padded/packed ratios; it also counts the positions each layout computes (padding included).
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench_perf.common import (
    RESULTS_DIR,
    device_description,
    git_commit,
    peak_growth_mb,
    print_table,
    run_worker,
    versions,
    worker_main,
    write_json,
)
from bench_perf.grpo_step import MODEL as GRPO_STEP_MODEL

MODEL = {**GRPO_STEP_MODEL, "max_position_embeddings": 4096}  # grpo_step's model, room for 2k-token rollouts
SETTINGS = {"model": MODEL, "rollouts": 64, "prompt_min": 32, "prompt_max": 512, "response_median": 200,
            "response_sigma": 0.9, "response_max": 1536, "micro_batch": 8, "max_tokens_per_micro_batch": 4096,
            "reps": 3, "seed": 0}
QUICK = {"rollouts": 16, "reps": 1, "response_max": 512}
LAYOUTS = ("padded", "packed", "bucketed")


def lengths(s: dict[str, Any]) -> list[tuple[int, int]]:
    rng = random.Random(s["seed"])
    out = []
    for _ in range(s["rollouts"]):
        drawn = rng.lognormvariate(0, s["response_sigma"]) * s["response_median"]
        response = int(min(s["response_max"], max(8, drawn)))
        out.append((rng.randint(s["prompt_min"], s["prompt_max"]), response))
    return out


def run_layout(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: a TrainSession on the model, the rollouts with fixed advantages, then the timed passes."""
    from libra.config import load_config
    from libra.train.grpo import GRPOConfig, Rollout, compute_logprobs, update
    from libra.train.rl_batches import micro_batches
    from libra.train.session import TrainSession

    s = spec["settings"]
    layout = spec["layout"]
    packed = layout == "packed"
    budget = s["max_tokens_per_micro_batch"] if layout != "padded" else 0
    (Path(spec["tmp"]) / "rl.jsonl").write_text(json.dumps({"question": "q", "answer": "1", "task": "reasoning"}))
    cfg = load_config(GRPOConfig, None, [
        f"model.path={spec['model']}", f"data.train={Path(spec['tmp']) / 'rl.jsonl'}", "data.task=reasoning",
        f"data.prompts_per_step={s['rollouts']}", f"run.global_batch_size={s['rollouts']}", "rollout.n=1",
        f"run.micro_batch_size={s['micro_batch']}",
        f"run.max_tokens_per_micro_batch={budget}", f"run.rl_layout={'packed' if packed else 'bucketed'}",
        "loss.kl_coef=0", "optim.lr=1e-6", "run.tensorboard=false", "run.export=false", "run.device=cpu",
        f"run.out={Path(spec['tmp']) / spec['layout']}"])
    gen = torch.Generator().manual_seed(s["seed"])
    rollouts = []
    for i, (p, r) in enumerate(lengths(s)):
        ids = torch.randint(3, 400, (p + r,), generator=gen).tolist()
        rollouts.append(Rollout(i, ids[:p], ids[p:], [-5.0] * r, 0.0, False, False, advantage=float(i % 3 - 1)))
    bins = micro_batches(rollouts, s["micro_batch"], budget, packed)
    def size(x):
        return len(x.prompt_ids) + len(x.response_ids)

    positions = sum(map(size, rollouts)) if packed else sum(len(b) * max(map(size, b)) for b in bins)
    with TrainSession(cfg, total_steps=10 ** 6, desc="bench") as session:
        def logprobs():
            session.model.eval()
            compute_logprobs(session, session.model, rollouts, "old_logp", 1.0)

        def step():
            session.model.train()
            update(session, cfg, rollouts, on_policy=True)

        step()  # warm-up (allocator, autograd graph caches)
        logprob_s, update_s = [], []
        for _ in range(s["reps"]):
            begin = time.perf_counter()
            logprobs()
            logprob_s.append(time.perf_counter() - begin)
            begin = time.perf_counter()
            step()
            update_s.append(time.perf_counter() - begin)
        memory = peak_growth_mb(step, torch.device("cpu"))
    return {"status": "ok", "micro_batches": len(bins), "positions_computed": positions,
            "logprob_s": statistics.median(logprob_s), "update_s": statistics.median(update_s),
            "update_peak_mb": memory["peak_mb"], "memory_method": memory["method"]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"smaller: {QUICK}")
    parser.add_argument("--timeout", type=float, default=1200, help="per worker, seconds")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, run_layout)
        return 0
    from libra.models.tiny import TinyConfig, save_tiny

    s = {**SETTINGS, **(QUICK if args.quick else {})}
    spread = lengths(s)
    tokens = sum(p + r for p, r in spread)
    env = {"device": device_description(torch.device("cpu")), "git_commit": git_commit(),
           "versions": versions("torch", "transformers")}
    records = {}
    with tempfile.TemporaryDirectory(prefix="bench-packing-") as tmp:
        model = str(save_tiny(Path(tmp) / "model", TinyConfig(**MODEL, seed=s["seed"])))
        for layout in LAYOUTS:
            records[layout] = run_worker("bench_perf.rl_packing", {"layout": layout, "model": model, "tmp": tmp,
                                                                   "settings": s}, args.timeout)
            print(f"{layout}: {records[layout]['status']} {records[layout].get('reason', '')}", flush=True)
    ok = all(r["status"] == "ok" for r in records.values())
    ratios = {}
    if ok:
        a = records["padded"]
        ratios = {f"padded/{k}": {m: a[m] / records[k][m] for m in ("logprob_s", "update_s", "update_peak_mb",
                                                                   "positions_computed")} for k in LAYOUTS[1:]}
    print_table(f"RL passes, padded, packed and bucketed: {s['rollouts']} rollouts, {tokens} tokens (prompts "
                f"{s['prompt_min']}-{s['prompt_max']}, responses log-normal median {s['response_median']} "
                f"<= {s['response_max']})",
                ["layout", "micro-batches", "positions computed", "log-prob pass s", "update s", "update peak MB"],
                [[k, r.get("micro_batches"), r.get("positions_computed"), r.get("logprob_s"), r.get("update_s"),
                  r.get("update_peak_mb")] for k, r in records.items()],
                caption="ratios: " + json.dumps({k: {m: round(v, 2) for m, v in r.items()} for k, r in ratios.items()}))
    out = args.out or RESULTS_DIR / "rl-packing-cpu.json"
    write_json(out, {"suite": "rl_packing", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                     **env, "settings": s, "quick": args.quick, "tokens": tokens,
                     "lengths": {"prompt": [p for p, _ in spread], "response": [r for _, r in spread]},
                     "records": records, "ratios": ratios})
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
