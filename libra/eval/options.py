"""Command-line options shared by the ``libra eval`` subcommands (engine, sampling, output)."""

from __future__ import annotations

import argparse

from libra.data.jsonl import DataError
from libra.rollout.factory import ENGINES, make_engine
from libra.rollout.types import SamplingParams


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine")
    g.add_argument("--model", required=True, help="model directory (save_pretrained) or hub id")
    g.add_argument("--engine", choices=ENGINES, default="vllm", help="rollout engine (default: vllm)")
    g.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    g.add_argument("--max-model-len", type=int, default=None, help="context length for vLLM (prompt + output)")
    g.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    g.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model (off)")


def add_sampling_arguments(p: argparse.ArgumentParser, *, n: int = 1, temperature: float = 0.0,
                           max_tokens: int = 4096) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--n", type=int, default=n, help=f"samples per prompt (default {n})")
    g.add_argument("--temperature", type=float, default=temperature)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--max-tokens", type=int, default=max_tokens, help="new tokens per sample")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--chunk", type=int, default=64, help="prompts per engine call; results are saved after each")


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory: generations.jsonl, results.json, report.md, *.png")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items (smoke runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def engine_from_args(args: argparse.Namespace):
    return make_engine(args.engine, args.model, dtype=args.dtype, seed=args.seed, max_model_len=args.max_model_len,
                       gpu_memory_utilization=args.gpu_memory_utilization, trust_remote_code=args.trust_remote_code)


def sampling_from_args(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(n=args.n, temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                          seed=args.seed)


def check_prompt_lengths(args: argparse.Namespace, requests, source: str) -> None:
    """Refuse, before an engine starts, prompts that cannot fit the model's context with room for
    ``--max-tokens`` new tokens; the error names how many, the longest, and what to change."""
    from transformers import AutoConfig, AutoTokenizer

    from libra.rollout.types import prompt_token_ids

    config = AutoConfig.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    context = args.max_model_len or getattr(config, "max_position_embeddings", None)
    if context is None:
        return
    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    room = context - args.max_tokens
    too_long = [(len(prompt_token_ids(tokenizer, r.prompt)), r.sample_id) for r in requests]
    too_long = sorted((n, sid) for n, sid in too_long if n > room)
    if too_long:
        n, sid = too_long[-1]
        raise DataError(source, None, None,
                        f"{len(too_long)} of {len(requests)} prompts do not fit the context: {context} tokens minus "
                        f"--max-tokens {args.max_tokens} leaves {room}, the longest (id {sid}) has {n}; use a model "
                        "with a longer context, a larger --max-model-len, a smaller --max-tokens, or --limit")
