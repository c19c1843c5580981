"""``libra quickstart`` (Libra-Mini, the quick tour) and ``libra reproduce`` (the full run on several seeds);
see ``libra.mini.pipeline`` and ``libra.mini.reproduce``."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="Libra-Mini: V2V -> rejection-sampled SFT -> GRPO -> evaluation, on CPU",
                       description="Runs the whole Libra method on a synthetic arithmetic domain with tiny models, at "
                                   "the quick-tour size (about 10 minutes on 2 cores; --size full is what "
                                   "`libra reproduce` runs per seed); resumable (rerun to continue); prints where it "
                                   "is and a report at the end.")
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    p.add_argument("--size", choices=("tour", "full", "fast"), default="tour",
                   help="tour: every stage at reduced size (default); full: the size of `libra reproduce`; "
                        "fast: every stage with a few steps (CI; numbers not meaningful)")
    p.add_argument("--fast", action="store_const", const="fast", dest="size", help="same as --size fast")
    _common(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the models and sampling (default 0)")
    p.set_defaults(func=run)
    r = sub.add_parser("reproduce", help="Libra-Mini at full size on several seeds, one combined report",
                       description="Runs the full-size Libra-Mini once per seed into OUT/seed-N (resumable), then "
                                   "writes OUT/report.md and OUT/results.json: every claim per seed and pooled over "
                                   "the seeds, with intervals, and the targets met or not.")
    r.add_argument("--out", type=Path, default=Path("runs/reproduce"))
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run (default 0 1 2)")
    r.add_argument("--size", choices=("tour", "full", "fast"), default="full", help=argparse.SUPPRESS)
    _common(r)
    r.set_defaults(func=run_reproduce)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("vllm", "hf"), default="vllm", help="rollout and evaluation engine")
    p.add_argument("--judge-rl", action="store_true",
                   help="also GRPO the downstream policy on unlabelled problems with the RL judge as its reward, "
                        "beside the gold rule reward (libra/mini/judge_rl.py; about 4 more minutes)")


def _preset(args: argparse.Namespace):
    from libra.mini.pipeline import PRESETS

    preset = PRESETS[args.size]
    return preset, replace(preset.config, engine=args.engine, judge_rl=args.judge_rl)


def run(args: argparse.Namespace) -> int:
    from libra.mini.pipeline import run as run_pipeline

    preset, cfg = _preset(args)
    run_pipeline(args.out, replace(cfg, seed=args.seed), preset.budget_s, preset.scope)
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    from libra.mini.reproduce import reproduce

    preset, cfg = _preset(args)
    reproduce(args.out, args.seeds, cfg, preset.budget_s, preset.scope)
    return 0
