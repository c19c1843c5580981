"""Verdict parsing: the last verdict wins, the answer after </think> first, never a guess, linear time."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libra.judge import (
    DEFAULT_THRESHOLD,
    PAIRWISE_LABELS,
    Verdict,
    parse_pairwise,
    parse_pointwise,
    parse_verification,
    preferred_side,
    score_to_label,
)

PARSERS = [parse_pointwise, parse_pairwise, parse_verification]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("My final verdict is that the correctness score is 2: [[score=2]]", 2),
        ("[[ score = 3 ]]", 3),
        ("[[SCORE=0]].", 0),
        ("[[Score =\n4]]", 4),
        # the judge quotes the label list, then decides
        ("Options: [[score=4]] ... [[score=0]]. Having checked, [[score=1]]", 1),
        # thinking quotes a later-looking label; the answer after </think> wins
        ("<think>maybe [[score=4]]</think>Final: [[score=0]] (not [[A>B]])", 0),
        ("<think>a</think> [[score=1]] <think>b [[score=3]]</think> verdict: [[score=2]]", 2),
        # nothing after </think>: fall back to the whole text
        ("<think>I settle on [[score=3]]</think>The response is right.", 3),
        ("[[[score=4]]]", 4),
    ],
)
def test_pointwise(text, value):
    assert parse_pointwise(text) == Verdict("pointwise", value, True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no verdict at all",
        "[[score=]] [score=3] [[score=3] [[score:3]] [[score = three]]",
        "[[score=4]] but finally [[score=5]]",  # out of range: invalid, not the earlier quoted 4
        "</think>",
    ],
)
def test_pointwise_invalid(text):
    assert parse_pointwise(text) == Verdict("pointwise", None, False)


@pytest.mark.parametrize("label", PAIRWISE_LABELS)
def test_pairwise_labels(label):
    spaced = "[[ " + label.lower().replace("a", "a ").replace("b", " b") + " ]]"
    assert parse_pairwise(f"1. [[A>>B]] 5. [[B>>A]] so: {spaced}") == Verdict("pairwise", label, True)


@pytest.mark.parametrize("text", ["[[A<B]]", "[[A>>>B]]", "[[A>A]]", "[[B=A]]", "[[C>B]]", "A>B"])
def test_pairwise_invalid(text):
    assert not parse_pairwise(text).valid


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[My Verdict]\n**[[Correct]]**.", True),
        ("[[Correct]] or [[Wrong]]\n...\n[My Verdict]\n[[ wrong ]]", False),
        ("<think>[[Wrong]]</think>[[CORRECT]]", True),
    ],
)
def test_verification(text, value):
    assert parse_verification(text) == Verdict("verification", value, True)


def test_kinds_ignore_each_other():
    text = "[[score=3]] [[A>B]] [[Correct]]"
    assert [p(text).value for p in PARSERS] == [3, "A>B", True]
    assert [p("[[Wrong]]").valid for p in PARSERS] == [False, False, True]


@pytest.mark.parametrize(("label", "side"), list(zip(PAIRWISE_LABELS, ["A", "A", "tie", "B", "B"])))
def test_preferred_side(label, side):
    assert preferred_side(label) == side


def test_preferred_side_rejects_non_labels():
    with pytest.raises(ValueError):
        preferred_side("A<B")


@pytest.mark.parametrize(
    ("score", "threshold", "label"), [(0, 2, False), (1, 2, False), (2, 2, True), (4, 2, True), (2, 3, False)]
)
def test_score_to_label(score, threshold, label):
    assert score_to_label(score, threshold) is label


def test_default_threshold_is_the_papers():
    assert DEFAULT_THRESHOLD == 2
    assert [score_to_label(s) for s in range(5)] == [False, False, True, True, True]


@pytest.mark.parametrize("score", [-1, 5, 2.0, True, None])
def test_score_to_label_rejects(score):
    with pytest.raises(ValueError):
        score_to_label(score)


ADVERSARIAL = [
    "[[" * 500_000,
    "[[" + " " * 1_000_000,
    "[[score=" + "9" * 1_000_000 + "]]",
    ("[[" + "a" * 62) * 16_000,
    "[[score=1]]" * 100_000,
    ("[[ score = " + " " * 31) * 20_000,
    "</think>" * 125_000,
    "[[A " + ">" * 1_000_000 + " B]]",
    ("[[Correct" + " " * 40) * 20_000,
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
@pytest.mark.parametrize("parse", PARSERS)
def test_megabyte_adversarial_input_is_fast(parse, text):
    start = time.perf_counter()
    parse(text)
    assert time.perf_counter() - start < 0.2


ALPHABET = st.sampled_from(list("[]= <>/thinkABab01234567scoreCWrongt \n") + ["[[", "]]", "</think>", "score="])


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(), st.lists(ALPHABET, max_size=60).map("".join)))
def test_parsers_never_raise_are_fast_and_agree_with_their_kind(text):
    start = time.perf_counter()
    verdicts = [parse(text) for parse in PARSERS]
    assert time.perf_counter() - start < 0.05
    for verdict in verdicts:
        assert verdict.valid == (verdict.value is not None)
    assert parse_pointwise(text).value in (None, 0, 1, 2, 3, 4)
    assert parse_pairwise(text).value in (None, *PAIRWISE_LABELS)


@settings(max_examples=100, deadline=None)
@given(st.text(), st.integers(0, 4), st.text(alphabet=st.characters(blacklist_characters="[]<")))
def test_a_final_verdict_wins_over_any_prefix(prefix, score, suffix):
    assert parse_pointwise(f"{prefix}</think>[[score={score}]]{suffix}").value == score


@pytest.mark.parametrize("parse, inside, after", [
    (parse_pointwise, "[[score=4]]", 4), (parse_pairwise, "[[A>B]]", "A>B"), (parse_verification, "[[Correct]]", True)])
def test_strict_mode_never_reads_a_verdict_inside_the_thinking(parse, inside, after):
    assert parse(f"<think>I settle on {inside}</think>The response is right.").valid  # lenient: the fallback
    assert not parse(f"<think>I settle on {inside}</think>The response is right.", strict=True).valid
    assert not parse(f"<think>still thinking {inside}", strict=True).valid  # thinking never closed: no answer
    assert parse(f"<think>still thinking {inside}").valid
    answer = {4: "[[score=4]]", "A>B": "[[A>B]]", True: "[[Correct]]"}[after]
    assert parse(f"<think>x</think>{answer}", strict=True).value == after
    assert parse(answer, strict=True).value == after  # a judge that does not think: the whole text is the answer
