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


# Named sampling settings. The paper's (Appendix D): "for deep thinking models, temperature=0.6 and
# maximum_length=32,768; for non-thinking models, temperature=0.0 and maximum_length=4,096".
PRESETS = {
    "thinking": {"temperature": 0.6, "max_tokens": 32768},
    "non-thinking": {"temperature": 0.0, "max_tokens": 4096},
}


def add_sampling_arguments(p: argparse.ArgumentParser, *, n: int = 1, temperature: float = 0.0,
                           max_tokens: int = 4096) -> None:
    """``--temperature`` and ``--max-tokens`` come, in this order, from the flag, from ``--preset``, or from
    the command's own default (given here); the settings that ran are printed and kept in results.json."""
    g = p.add_argument_group("sampling")
    g.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="named settings: 'thinking' = the paper's for thinking judges (temperature 0.6, 32,768 new "
                        "tokens), 'non-thinking' = the paper's for the others (0.0, 4,096); explicit "
                        f"--temperature / --max-tokens win (default without a preset: {temperature:g}, {max_tokens})")
    g.add_argument("--n", type=int, default=n, help=f"samples per prompt (default {n})")
    g.add_argument("--temperature", type=float, default=None, help=f"default {temperature:g} (or the preset's)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--max-tokens", type=int, default=None, help=f"new tokens per sample (default {max_tokens}, or "
                                                                "the preset's)")
    g.add_argument("--seed", type=int, default=0)
    p.set_defaults(default_temperature=temperature, default_max_tokens=max_tokens)
    g.add_argument("--chunk", type=int, default=64, help="prompts per engine call; results are saved after each")


def add_verdict_mode_argument(p: argparse.ArgumentParser, default: str = "lenient") -> None:
    """``--verdict-mode``: lenient by default for evaluation; training commands pass their own default."""
    from libra.judge import VERDICT_MODES

    p.add_argument("--verdict-mode", choices=VERDICT_MODES, default=default,
                   help=f"default {default}. lenient: a thinking judge's verdict is read after </think>, and inside "
                        "the thinking only when the answer has none; strict: only after </think> (as training reads "
                        "it: RL rewards and rejection-sampled SFT targets)")


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory: generations.jsonl, results.json, report.md, *.png")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items (smoke runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_eval_arguments(p: argparse.ArgumentParser, **sampling_defaults) -> None:
    """What every evaluation command takes: engine, sampling (``n``, ``temperature``, ``max_tokens``
    defaults) and output options."""
    add_engine_arguments(p)
    add_sampling_arguments(p, **sampling_defaults)
    add_output_arguments(p)


def add_too_long_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--too-long", choices=("count", "error"), default="count",
                   help="prompts that do not fit the context with room for --max-tokens: 'count' (default) judges "
                        "the rest and counts each of them as an invalid (wrong) judgment, reported per subset; "
                        "'error' refuses the run before an engine starts")


def prepare_sampling(args: argparse.Namespace, requests, source: str, *, unfit: dict | None = None) -> SamplingParams:
    """The sampling settings of a command, once its prompts are known: the prompts must fit the context
    (checked before any engine starts), and the settings that will run are printed. With ``unfit`` (a
    dict), the prompts that do not fit are put into it (sample id -> prompt tokens) and announced instead
    of refused; the command then does not generate them and reports them."""
    check_prompt_lengths(args, requests, source, unfit)
    params = sampling_from_args(args)
    print(describe_sampling(params, args.sampling_source), flush=True)
    return params


def engine_from_args(args: argparse.Namespace):
    return make_engine(args.engine, args.model, dtype=args.dtype, seed=args.seed, max_model_len=args.max_model_len,
                       gpu_memory_utilization=args.gpu_memory_utilization, trust_remote_code=args.trust_remote_code)


def resolve_sampling(args: argparse.Namespace) -> None:
    """Fill ``args.temperature`` / ``args.max_tokens`` left unset from the preset or the command's default,
    and record where each came from in ``args.sampling_source`` (idempotent)."""
    if getattr(args, "sampling_source", None) is not None:
        return
    preset = PRESETS.get(getattr(args, "preset", None) or "", {})
    source = {}
    for name in ("temperature", "max_tokens"):
        if getattr(args, name, None) is not None:
            source[name] = "flag"
        elif name in preset:
            setattr(args, name, preset[name])
            source[name] = f"preset {args.preset}"
        else:
            setattr(args, name, getattr(args, f"default_{name}"))
            source[name] = "default"
    args.sampling_source = source


def sampling_from_args(args: argparse.Namespace) -> SamplingParams:
    resolve_sampling(args)
    return SamplingParams(n=args.n, temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                          seed=args.seed)


def describe_sampling(params: SamplingParams, source: dict | None = None) -> str:
    """One line naming the sampling settings that run (and, for the two a preset sets, where they came from)."""
    origin = source or {}

    def tag(name):
        return f" ({origin[name]})" if name in origin else ""

    return (f"sampling: n={params.n}, temperature {params.temperature:g}{tag('temperature')}, top_p "
            f"{params.top_p:g}, max {params.max_tokens} new tokens{tag('max_tokens')}, seed {params.seed}")


def check_prompt_lengths(args: argparse.Namespace, requests, source: str, unfit: dict | None = None) -> None:
    resolve_sampling(args)
    prompt_lengths_fit(args.model, requests, source, max_tokens=args.max_tokens, max_model_len=args.max_model_len,
                       trust_remote_code=args.trust_remote_code, unfit=unfit)


def prompt_lengths_fit(model: str, requests, source: str, *, max_tokens: int, max_model_len: int | None = None,
                       trust_remote_code: bool = False, unfit: dict | None = None) -> None:
    """Refuse, before an engine starts, prompts that cannot fit the model's context with room for
    ``--max-tokens`` new tokens; the error names how many, the longest, and what to change. With ``unfit``
    (a dict) they are not refused: they go into it (sample id -> prompt tokens) and a line says so."""
    from transformers import AutoConfig, AutoTokenizer

    from libra.rollout.types import prompt_token_ids

    config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    context = max_model_len or getattr(config, "max_position_embeddings", None)
    if context is None:
        return
    tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
    room = context - max_tokens
    too_long = [(len(prompt_token_ids(tokenizer, r.prompt)), r.sample_id) for r in requests]
    too_long = sorted((n, sid) for n, sid in too_long if n > room)
    if not too_long:
        return
    n, sid = too_long[-1]
    what = (f"{len(too_long)} of {len(requests)} prompts do not fit the context: {context} tokens minus "
            f"--max-tokens {max_tokens} leaves {room}, the longest (id {sid}) has {n}")
    if unfit is None:
        raise DataError(source, None, None, f"{what}; use a model with a longer context, a larger "
                                            "--max-model-len, a smaller --max-tokens, or --limit")
    unfit.update((s, length) for length, s in too_long)
    print(f"{source}: {what}; they are not generated and each counts as an invalid (wrong) judgment", flush=True)
