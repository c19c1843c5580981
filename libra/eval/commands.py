"""``libra eval``: one subcommand per benchmark, each defined next to its evaluation code."""

from __future__ import annotations

import argparse

from libra.eval import libra_bench, pairwise, passk, probes, scalar


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate judges, reward models and policies")
    evals = p.add_subparsers(dest="benchmark", required=True)
    for module in (libra_bench, probes, pairwise, scalar, passk):
        module.register(evals)
