"""``libra quickstart``: the Libra-Mini end-to-end job (see ``libra.mini.pipeline``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="Libra-Mini: V2V -> rejection-sampled SFT -> GRPO -> evaluation, on CPU",
                       description="Runs the whole Libra method on a synthetic arithmetic domain with tiny models; "
                                   "resumable (rerun to continue); prints where it is and a report at the end.")
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    p.add_argument("--fast", action="store_true", help="every stage with fewer steps (CI; numbers not meaningful)")
    p.add_argument("--engine", choices=("vllm", "hf"), default="vllm", help="rollout and evaluation engine")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the models and sampling (default 0)")
    p.add_argument("--judge-rl", action="store_true",
                   help="also GRPO the downstream policy on unlabelled problems with the RL judge as its reward, "
                        "beside the gold rule reward (libra/mini/judge_rl.py; about 6 more minutes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from libra.mini.pipeline import MiniConfig
    from libra.mini.pipeline import run as run_pipeline

    cfg = MiniConfig.fast() if args.fast else MiniConfig()
    run_pipeline(args.out, replace(cfg, engine=args.engine, seed=args.seed, judge_rl=args.judge_rl))
    return 0
