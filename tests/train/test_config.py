"""Config loading: YAML, then dotted overrides, typed, with errors naming source and key."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from libra.config import ConfigError, load_config, save_config
from libra.train.sft import SFTConfig


@dataclass
class Inner:
    lr: float = 1e-5
    kind: Literal["a", "b"] = "a"
    betas: tuple[float, ...] = (0.9, 0.95)


@dataclass
class Outer:
    name: str = "x"
    steps: int = 3
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\ninner:\n  lr: 2.0e-5\n  kind: b\n")
    cfg = load_config(Outer, path, ["inner.lr=3e-5", "limit=7", "inner.betas=[0.8, 0.9]", "name=7"])
    assert cfg == Outer(name="7", steps=5, limit=7, inner=Inner(lr=3e-5, kind="b", betas=(0.8, 0.9)))


@pytest.mark.parametrize("override, message", [
    ("stepz=1", "command line: stepz: unknown key"),
    ("steps=1.5", "command line: steps: expected int"),
    ("steps=true", "command line: steps: expected int"),
    ("inner.kind=c", "command line: inner.kind: expected one of"),
    ("inner.lr=fast", "command line: inner.lr: expected float"),
    ("inner=3", "command line: inner: expected a mapping"),
    ("noequals", "command line: noequals: expected key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(Outer, None, [override])


def test_bad_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("inner:\n  lr: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: inner.lr: expected float"):
        load_config(Outer, path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_saved_config_loads_back(tmp_path):
    cfg = load_config(SFTConfig, None, ["model.path=m", "optim.lr=2e-5", "run.max_steps=3"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(SFTConfig, tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("name, trainer", [("sft-7b.yaml", "sft"), ("grpo-7b.yaml", "grpo")])
def test_example_configs_load(name, trainer):
    from libra.train.grpo import GRPOConfig

    path = Path(__file__).resolve().parents[2] / "configs" / name
    cfg = load_config({"sft": SFTConfig, "grpo": GRPOConfig}[trainer], path)
    assert cfg.run.global_batch_size == 256 and cfg.model.mixed_precision is True


@pytest.mark.parametrize(("trainer", "override", "message"), [
    ("grpo", "loss.eps_low=-1", "loss.eps_low: the clip range needs 0 <= eps_low < 1"),
    ("grpo", "loss.agg=token-sum", "loss.agg: expected one of"),
    ("grpo", "loss.dual_clip=0.5", "loss.dual_clip: must be > 1"),
    ("grpo", "data.prompts_per_step=10", "data.prompts_per_step: 10 is not a multiple of run.global_batch_size=256"),
    ("grpo", "loss.rollout_correction=mask-token loss.correction_low=1.5", "loss.rollout_correction"),
    ("grpo", "rollout.max_staleness=-1", "rollout.max_staleness: must be >= 0"),
    ("grpo", "rollout.max_staleness=1 rollout.dynamic_sampling=true", "rollout.dynamic_sampling: dynamic sampling"),
    ("grpo", "eval.n=0", "eval.n: must be >= 1"),
    ("grpo", "reward.judge_weight=1.5", "reward.judge_weight: must lie in [0, 1]"),
    ("grpo", "run.max_tokens_per_micro_batch=-1", "run.max_tokens_per_micro_batch: must be >= 0"),
    ("sft", "optim.grad_clip=0", "optim.grad_clip: must be > 0"),
    ("dpo", "optim.warmup_ratio=1", "optim.warmup_ratio: must lie in [0, 1)"),
])
def test_rules_across_values_are_checked_when_the_config_loads(trainer, override, message):
    """No model path, data or tokenizer is given: the error can only come from loading the config.
    ``override`` holds one or more overrides, separated by spaces."""
    from libra.train.commands import config_class

    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config(config_class(trainer), None, override.split())
