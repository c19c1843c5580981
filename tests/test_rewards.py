"""Eq. 3-4 rewards: correctness in {0, 1} minus a length penalty clipped to [0, 1]."""

import sys
import types

import pytest

from libra.rewards import L_EXP, L_MAX, judging_reward, length_penalty, reasoning_reward


def test_paper_constants():
    assert (L_EXP, L_MAX) == (16384, 32768)


@pytest.mark.parametrize(
    ("length", "penalty"),
    [(0, 0.0), (L_EXP, 0.0), (L_EXP + 4096, 0.25), (24576, 0.5), (L_MAX, 1.0), (10 * L_MAX, 1.0)],
)
def test_length_penalty(length, penalty):
    assert length_penalty(length) == penalty


def test_length_penalty_custom_buffer():
    assert length_penalty(150, l_exp=100, l_max=300) == 0.25


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"length": -1}, "length must be >= 0"), ({"length": 5, "l_exp": 10, "l_max": 10}, "l_max must exceed l_exp")],
)
def test_length_penalty_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        length_penalty(**kwargs)


@pytest.mark.parametrize(
    ("text", "label", "kind", "reward"),
    [
        ("... [[score=4]]", True, "pointwise", 1.0),
        ("... [[score=2]]", True, "pointwise", 1.0),  # threshold 2: a 2 counts as "correct"
        ("... [[score=1]]", True, "pointwise", 0.0),
        ("... [[score=0]]", False, "pointwise", 1.0),
        ("no verdict", False, "pointwise", 0.0),  # invalid is never correct, even against a False label
        ("[[A>>B]]", "A", "pairwise", 1.0),
        ("[[A>B]]", "A", "pairwise", 1.0),
        ("[[B>A]]", "A", "pairwise", 0.0),
        ("[[A=B]]", "A", "pairwise", 0.0),
        ("[[A=B]]", "tie", "pairwise", 1.0),
        ("[[Wrong]]", False, "verification", 1.0),
        ("[[Correct]]", False, "verification", 0.0),
    ],
)
def test_judging_reward_correctness(text, label, kind, reward):
    assert judging_reward(text, label, length=100, kind=kind) == reward


def test_judging_reward_subtracts_the_penalty():
    assert judging_reward("[[score=3]]", True, length=24576) == 0.5
    assert judging_reward("[[score=3]]", False, length=L_MAX) == -1.0


def test_judging_reward_threshold_is_configurable():
    assert judging_reward("[[score=2]]", True, length=0, threshold=3) == 0.0


@pytest.mark.parametrize(
    ("label", "kind", "message"),
    [(1, "pointwise", "pointwise label"), ("A>B", "pairwise", "pairwise label"), (True, "ranking", "kind must be")],
)
def test_judging_reward_validation(label, kind, message):
    with pytest.raises(ValueError, match=message):
        judging_reward("[[A>B]]", label, length=0, kind=kind)


@pytest.fixture
def fake_verifier(monkeypatch):
    """Stand-in for libra.verify (written separately): correct iff the response ends with the gold answer."""
    calls = []

    def verify_answer(response, gold, *, timeout=5.0):
        calls.append(timeout)
        return response.endswith(gold)

    monkeypatch.setitem(sys.modules, "libra.verify", types.SimpleNamespace(verify_answer=verify_answer))
    return calls


@pytest.mark.parametrize(
    ("response", "length", "reward"), [("so 42", 0, 1.0), ("so 41", 0, 0.0), ("so 42", 28672, 0.25)]
)
def test_reasoning_reward(fake_verifier, response, length, reward):
    assert reasoning_reward(response, "42", length=length) == reward


def test_reasoning_reward_passes_the_timeout(fake_verifier):
    reasoning_reward("42", "42", length=0, timeout=1.5)
    assert fake_verifier == [1.5]


def test_reasoning_reward_validates_before_verifying(fake_verifier):
    with pytest.raises(ValueError, match="length"):
        reasoning_reward("42", "42", length=-3)
    assert fake_verifier == []


def test_rl_reward_does_not_pay_for_a_verdict_inside_the_thinking():
    """The default is strict: the verdict must come after </think> (a reward for a verdict left in the
    reasoning would teach the policy to stop answering)."""
    text = "<think>It is right, [[score=4]]</think>The response looks fine."
    assert judging_reward(text, True, length=10, l_exp=100, l_max=200) == 0.0
    assert judging_reward(text, True, length=10, l_exp=100, l_max=200, strict=False) == 1.0
    assert judging_reward("<think>ok</think>[[score=4]]", True, length=10, l_exp=100, l_max=200) == 1.0
