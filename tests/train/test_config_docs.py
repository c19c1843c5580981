"""A config that documents itself: every key of every trainer's config has a doc, and ``--help-config``
lists each key with its type, default and doc."""
from dataclasses import dataclass, field
from typing import Literal

import pytest

from libra.cli import main
from libra.config import describe, field_docs
from libra.train.commands import _TRAINERS, config_class


@dataclass
class Section:
    rate: float = 0.5  # how fast. Later sentences are left out
    # a block above
    # that goes on
    mode: Literal["a", "b"] = "a"
    bare: int = 3


@dataclass
class Top:
    name: str | None = None  # the name
    section: Section = field(default_factory=lambda: Section(rate=0.25))


def test_docs_come_from_the_comment_beside_or_above_a_field():
    assert field_docs(Section) == {"rate": "how fast.", "mode": "a block above that goes on"}


def test_describe_flattens_sections_with_the_defaults_their_parent_sets():
    keys = {k.path: k for k in describe(Top)}
    assert list(keys) == ["name", "section.rate", "section.mode", "section.bare"]
    assert keys["section.rate"].default == "0.25" and keys["section.rate"].type == "float"
    assert keys["section.mode"].type == "one of a, b" and keys["name"].type == "str | None"
    assert keys["section.bare"].doc == ""


@pytest.mark.parametrize("trainer", sorted(_TRAINERS))
def test_every_trainer_key_has_a_doc(trainer):
    undocumented = [k.path for k in describe(config_class(trainer)) if not k.doc]
    assert undocumented == []


def test_help_config_lists_every_key(capsys):
    assert main(["train", "dpo", "--help-config"]) == 0
    out = capsys.readouterr().out
    for key in describe(config_class("dpo")):
        assert key.path in out and key.doc in out
    (beta,) = [line for line in out.splitlines() if line.startswith("beta ")]
    assert beta.split()[1:] == ["float", "=", "0.01"]
