"""Property tests: extraction and verification never raise on arbitrary text and stay within the bound."""

import time
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libra.verify import extract_answer, verify_answer
from libra.verify.normalize import normalize

TIMEOUT = 2.0

FRAGMENTS = st.sampled_from(
    ["\\boxed{", "\\fbox{", "\\boxed ", "}", "{", "<think>", "</think>", "<|begin_of_thought|>",
     "<|end_of_thought|>", "<|begin_of_solution|>", "<|end_of_solution|>", "the final answer is ", "Final Answer:",
     "answer is", "$", "\\frac", "\\sqrt", "^", "_", "\\text{", "\\left(", "\\right)", ",", ".", "=", " ", "x",
     "\\pi", "\\infty", "\\{", "\\}", "!", "(", ")", "[", "]", "\\\\", "\\begin{pmatrix}", "\\end{pmatrix}"]
)
TEXTS = st.one_of(st.text(max_size=300), st.lists(st.one_of(FRAGMENTS, st.integers(0, 10**6).map(str)),
                                                   max_size=40).map("".join))
ANSWERS = st.one_of(st.text(max_size=30), st.lists(st.one_of(FRAGMENTS, st.integers(0, 99).map(str)),
                                                    max_size=8).map("".join))


@settings(max_examples=100, deadline=None)
@given(TEXTS)
def test_extract_never_raises(text):
    start = time.monotonic()
    answer = extract_answer(text)
    assert answer is None or isinstance(answer, str)
    assert time.monotonic() - start < 0.1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS, ANSWERS)
def test_verify_never_raises_and_is_bounded(response, gold):
    start = time.monotonic()
    assert verify_answer(response, gold, timeout=TIMEOUT) in (True, False)
    assert time.monotonic() - start < TIMEOUT + 1.0


@settings(max_examples=30, deadline=None)
@given(ANSWERS)
def test_an_answer_matches_itself_or_is_rejected_quickly(answer):
    """Reflexivity for every answer with content; never a crash for the rest. An answer that normalises to
    nothing (``$``, ``\\text{}``) is never matched by its normal form (``compare._exact``: a reward must not
    pay for an empty box) and goes to the symbolic check, which rejects ``$`` against itself."""
    response = "\\boxed{" + answer + "}"
    extracted = extract_answer(response)
    result = verify_answer(response, extracted or "", timeout=TIMEOUT)
    if extracted is not None and normalize(extracted):
        assert result is True


# Property tests of the whole-answer fallbacks (issue 11): a correct boxed answer stays correct whatever
# closing text follows it, and a fragment of a stated answer never matches.

VALUES = st.one_of(
    st.integers(-999, 999).map(lambda n: (str(n), str(n))),
    st.tuples(st.integers(1, 99), st.integers(2, 99)).map(lambda ab: (f"\\frac{{{ab[0]}}}{{{ab[1]}}}",
                                                                      f"{ab[0]}/{ab[1]}")),
    st.integers(1, 99).map(lambda n: (f"{n}\\sqrt{{2}}", f"\\sqrt{{2}} \\cdot {n}")),
)
CLOSINGS = st.sampled_from(["", "\n\nI think that's it.", " Then $x = 7$ and $y = 8$.", "\n\nSo 12 and 13.",
                            "\n\nThe solutions are $x = 2$ or $x = 3$.", " the answer is 99."])


@settings(max_examples=60, deadline=None)
@given(VALUES, CLOSINGS, st.sampled_from(["The answer is $\\boxed{%s}$.", "\\[\\boxed{%s}\\]", "so \\boxed{x = %s}"]))
def test_a_correct_boxed_answer_stays_correct(value, closing, template):
    """No new false negatives: the box decides, not the closing text after it."""
    boxed, other_spelling = value
    response = "Work it out.\n\n" + template % boxed + closing
    assert verify_answer(response, other_spelling, timeout=TIMEOUT)


def _fragments(numerator: int, denominator: int, sign: str) -> list[str]:
    """Pieces of the stated answer sign * numerator / denominator that do not equal it."""
    value = Fraction(int(sign + "1") * numerator, denominator)
    pieces = [str(numerator), str(denominator), sign + str(denominator)]
    return [piece for piece in pieces if Fraction(piece) != value]


FRACTION_STATEMENTS = st.sampled_from([
    "Thus $x = {sign}\\frac{{{a}}}{{{b}}}$.", "So the answer is {sign}\\tfrac{{{a}}}{{{b}}}.",
    "Therefore \\( y = {sign}\\dfrac{{{a}}}{{{b}}} \\).", "Hence it equals {sign}\\frac{{{a}}}{{{b}}}.",
    "so x = {sign}{a}/{b}.", "We get\n\\[\nk = {sign}\\frac{{{a}}}{{{b}}}\n\\]"])


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 99), st.integers(2, 99), st.sampled_from(["", "-"]), FRACTION_STATEMENTS)
def test_a_fragment_of_an_unboxed_fraction_never_matches(numerator, denominator, sign, template):
    """No new false positives: the closing statement's answer is the whole fraction, never a piece of it."""
    response = template.format(sign=sign, a=numerator, b=denominator)
    value = Fraction(int(sign + "1") * numerator, denominator)
    assert verify_answer(response, f"{value.numerator}/{value.denominator}", timeout=TIMEOUT)
    for piece in _fragments(numerator, denominator, sign):
        assert not verify_answer(response, piece, timeout=TIMEOUT), piece


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=2, max_size=4, unique=True),
       st.sampled_from(["The solutions are {joined}.", "So the answer is {joined}.", "Therefore {boxes}."]))
def test_one_value_of_several_never_matches(numbers, template):
    """An answer with several values is not any one of them, and it is the same set in any order."""
    joined = " and ".join(f"$x = {n}$" for n in numbers)
    boxes = ", ".join(f"$\\boxed{{{n}}}$" for n in numbers)
    response = template.format(joined=joined, boxes=boxes)
    assert verify_answer(response, ", ".join(map(str, reversed(numbers))), timeout=TIMEOUT)
    for n in numbers:
        assert not verify_answer(response, str(n), timeout=TIMEOUT)
