"""``libra train {sft,grpo,dpo} --config cfg.yaml key=value ...``: the same command for one process or
many (``torchrun --nproc_per_node N -m libra train ...``, one or many nodes)."""

from __future__ import annotations

import argparse

from libra.config import check, help_text, load_config
from libra.train import rejection

_TRAINERS = {
    "sft": ("libra.train.sft", "SFTConfig", "train_sft", "supervised fine-tuning on chat rows (assistant tokens)"),
    "grpo": ("libra.train.grpo", "GRPOConfig", "train_grpo",
             "GRPO with clip-higher, k3 KL and the length-penalised verifiable reward (Libra-RM)"),
    "dpo": ("libra.train.dpo", "DPOConfig", "train_dpo", "DPO on preference pairs (e.g. labelled by a reward model)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train with FSDP2 (one process, or many under torchrun)")
    trainers = p.add_subparsers(dest="trainer", required=True)
    for name, (_, _, _, summary) in _TRAINERS.items():
        t = trainers.add_parser(name, help=summary,
                                description=f"{summary}. Settings come from --config, then key=value overrides "
                                            "(dotted paths, e.g. optim.lr=2e-5 run.out=runs/x); --help-config "
                                            "lists every key.")
        t.add_argument("--config", help="YAML file with the settings (defaults: the paper's recipe)")
        t.add_argument("overrides", nargs="*", metavar="key=value")
        t.add_argument("--help-config", action="store_true",
                       help="list every key (dotted path) with its type, default and doc, and exit")
        t.set_defaults(func=_run, trainer_name=name)
    rejection.register(trainers)


def _run(args: argparse.Namespace) -> int:
    if args.help_config:
        print(help_text(config_class(args.trainer_name)))
        return 0
    train(args.trainer_name, args.overrides, config=args.config)
    return 0


def config_class(name: str) -> type:
    """The config dataclass of trainer ``name`` (importing its module: torch, not a model)."""
    import importlib

    module, config_cls, _, _ = _TRAINERS[name]
    return getattr(importlib.import_module(module), config_cls)


def train(name: str, overrides: list[str], *, config: str | None = None, **kwargs) -> None:
    """``libra train NAME --config CONFIG key=value ...`` as a function: the same config loading and checks,
    then the trainer's entry point (``kwargs`` go to it, e.g. GRPO's ``engine_factory``)."""
    _entry(name)(load_config(config_class(name), config, overrides), **kwargs)  # load_config ran the checks


def run_trainer(name: str, cfg, **kwargs) -> None:
    """Trainer ``name`` on a config dataclass (loaded, or built in code as Libra-Mini does), after the rules
    across its values (``libra.config.check``, which ``load_config`` runs for a loaded one)."""
    check(cfg)
    _entry(name)(cfg, **kwargs)


def _entry(name: str):
    """Trainer ``name``'s entry point (``train_sft``, ``train_grpo``, ``train_dpo``)."""
    import importlib

    module, _, entry, _ = _TRAINERS[name]
    return getattr(importlib.import_module(module), entry)
