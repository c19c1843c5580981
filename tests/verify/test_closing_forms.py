"""Final-answer forms that a check against human labels (ProcessBench) found missed: several boxes that
together are one answer, a bold "Answer:" line, a tuple of functions, a closing "a total of N hours".

Each form has a realistic response (reasoning first, then the answer) and the negative cases that keep it
from accepting more than a careful reader would: several boxes make one answer only where nothing but
separators stand between them, so against a single-valued gold they never match by one of them; an unboxed
answer counts only in the response's closing lines.
"""

import pytest

from libra.verify import verify_answer
from libra.verify.extract import extract


def check(response: str, gold: str) -> bool:
    return verify_answer(response, gold, timeout=10.0)


ROOTS = (
    "To solve \\(x^2 + 10x + 9 = 0\\), we factor the left-hand side. We need two numbers whose product is 9 "
    "and whose sum is 10; these are 1 and 9, so the equation becomes \\((x + 1)(x + 9) = 0\\).\n\n"
    "Setting each factor equal to zero gives \\(x + 1 = 0\\) or \\(x + 9 = 0\\).\n\n"
    "Therefore, the solutions are \\(\\boxed{-1}\\) and \\(\\boxed{-9}\\)."
)
RESPECTIVELY = (
    "Let the two numbers be \\(a\\) and \\(b\\) with \\(a < b\\). Since \\(a + b = 7\\) and \\(ab = 12\\), "
    "they are the roots of \\(t^2 - 7t + 12 = 0\\), which factors as \\((t - 3)(t - 4) = 0\\).\n\n"
    "So \\(a\\) and \\(b\\) are \\(\\boxed{3}\\) and \\(\\boxed{4}\\), respectively."
)
PAIRS = (
    "We need positive integers \\(x\\) and \\(y\\) with \\(x + y = 3\\). Since both are at least 1, "
    "\\(x\\) can only be 1 or 2, and \\(y = 3 - x\\) follows.\n\n"
    "So the ordered pairs are:\n\\[\n\\boxed{(1, 2)}\n\\]\nand\n\\[\n\\boxed{(2, 1)}\n\\]"
)
SEPARATE = (
    "For part one, the perimeter condition gives \\(2a + 2 = 8\\), so \\(a = \\boxed{3}\\).\n\n"
    "For the second part we substitute \\(a = 3\\) into \\(b = a + 1\\) and find that the answer is "
    "\\(\\boxed{4}\\)."
)


@pytest.mark.parametrize(
    ("response", "gold", "verdict"),
    [
        (ROOTS, "-1, -9", True),
        (ROOTS, "-9, -1", True),
        (ROOTS, "x = -1 \\text{ or } x = -9", True),
        (ROOTS, "-1, 9", False),
        (ROOTS, "-9", False),  # a single gold: one of the boxes matching is not enough
        (ROOTS, "-1", False),
        (RESPECTIVELY, "(3, 4)", True),
        (RESPECTIVELY, "3 \\text{ and } 4", True),
        (RESPECTIVELY, "(4, 3)", False),  # a pair is compared in order
        (RESPECTIVELY, "4", False),
        (PAIRS, "(1, 2), (2, 1)", True),
        (PAIRS, "(2, 1), (1, 2)", True),
        (PAIRS, "(1, 2), (2, 2)", False),
        (PAIRS, "(2, 1)", False),  # one pair of the two is not the answer
        # boxes with reasoning between them are not one answer: the last box is, as before
        (SEPARATE, "4", True),
        (SEPARATE, "3", False),
        (SEPARATE, "3, 4", False),
    ],
)
def test_boxes_separated_by_math_delimiters_are_one_answer(response, gold, verdict):
    assert check(response, gold) is verdict


def test_joined_boxes_say_so():
    assert (extract(ROOTS).answer, extract(ROOTS).source) == ("-1, -9", "2 boxes")
    assert (extract(SEPARATE).answer, extract(SEPARATE).source) == ("4", "box")


BOLD = (
    "The legs of the right triangle are 13 and 1, so its area is half their product: "
    "\\(\\frac{1}{2} \\cdot 13 \\cdot 1\\).\n\n"
    "Simplifying gives the area of the triangle.\n\n"
    "**Answer: \\( \\frac{13}{2} \\)**"
)
BOLD_LABEL = (
    "Each of the 4 boxes holds 3 red and 2 blue marbles, so there are 4 * 5 = 20 marbles in all, and "
    "3 of them are taken out.\n\n"
    "**Final Answer:** 17"
)
BOLD_NOT_LAST = (
    "The legs of the right triangle are 13 and 1, so its area is half their product.\n\n"
    "**Answer: \\( \\frac{13}{2} \\)**\n\n"
    "Wait, the problem gives the hypotenuse, not a leg, so I need to redo this.\n\n"
    "Let me set up the Pythagorean theorem first."
)


@pytest.mark.parametrize(
    ("response", "gold", "verdict"),
    [
        (BOLD, "\\frac{13}{2}", True),
        (BOLD, "6.5", True),
        (BOLD, "13", False),  # the answer is taken whole, never a piece of it
        (BOLD, "2", False),
        (BOLD_LABEL, "17", True),
        (BOLD_LABEL, "3", False),
        (BOLD_NOT_LAST, "\\frac{13}{2}", False),  # an answer the response goes on to withdraw
        ("So the sum is 4 + 13.\n\n**Final Answer: 17**", "17", True),
        ("Adding the two counts:\n\n**Answer:** \\( 13 +", "13", False),  # cut off mid-formula
    ],
)
def test_bold_answer_line(response, gold, verdict):
    assert check(response, gold) is verdict


FUNCTIONS = (
    "Setting \\(m = n = 1\\) in the equation gives \\(g(1) = 1\\). Substituting \\(m = 1\\) shows that "
    "\\(g\\) is constant, and then \\(f(n + 1) = f(n) + 1\\) with \\(f(1) = 1\\) gives \\(f(n) = n\\) by "
    "induction. Checking, \\(f(n) = n\\) and \\(g(n) = 1\\) satisfy the original equation.\n\n"
    "Therefore, the only solution is \\(\\boxed{(f(n), g(n)) = (n, 1)}\\)."
)


@pytest.mark.parametrize(
    ("gold", "verdict"),
    [
        ("f(n)=n, g(n)=1", True),
        ("g(n) = 1, f(n) = n", True),  # named values: the names give the order
        ("f(n)=1, g(n)=n", False),
        ("f(n)=n, g(n)=n", False),
    ],
)
def test_a_tuple_of_functions_against_named_values(gold, verdict):
    assert check(FUNCTIONS, gold) is verdict


@pytest.mark.parametrize(
    ("pred", "gold", "verdict"),
    [
        ("(x, y) = (1, 2)", "x = 1, y = 2", True),
        ("x = 2, y = 1", "x = 1, y = 2", False),  # the same values under the other names
        ("y = 2, x = 1", "(x, y) = (1, 2)", True),
        ("(x, y) = (1, 2)", "x = 1, y = 2, z = 3", False),
    ],
)
def test_named_values_are_compared_by_name(pred, gold, verdict):
    assert check(f"Solving the system by elimination, we obtain \\(\\boxed{{{pred}}}\\).", gold) is verdict


TOTAL = (
    "Jim spends 2 hours a day on his hobbies from Monday to Friday, which is 2 * 5 = 10 hours a week, and "
    "7 hours on the weekend. So each week he spends 10 + 7 = 17 hours.\n\n"
    "Over the 2 weeks, that is 17 * 2 = 34 hours.\n\n"
    "Therefore, Jim spends a total of 34 hours on his hobbies in 2 weeks."
)
TOTAL_IN_WORDS = (
    "Anna worked 12 hours, Ben worked 10 hours and Carl worked 12 hours, so together they worked "
    "12 + 10 + 12 = 34 hours.\n\n"
    "Thus three friends worked a total of 34 hours over 5 days."
)
TOTAL_MID_RESPONSE = (
    "On Monday and Tuesday Jim spends a total of 34 hours on his hobbies.\n\n"
    "Next we need the hours for the rest of the week, which depend on the 3 remaining days.\n\n"
    "Let me work these out one at a time."
)


@pytest.mark.parametrize(
    ("response", "gold", "verdict"),
    [
        (TOTAL, "34", True),
        (TOTAL, "2", False),
        (TOTAL_IN_WORDS, "34", True),
        (TOTAL_IN_WORDS, "5", False),
        (TOTAL_MID_RESPONSE, "34", False),  # only the closing statement states the answer
        ("Adding the hours of both weeks, the answer is a total of 34 hours.", "34", True),
        # a total that the sentence goes on to compute or to divide is left to the general rule
        ("So Jim spends a total of 17 * 2 = 34 hours.", "34", True),
        ("So Jim spends a total of 17 * 2 = 34 hours.", "17", False),
        ("They work a total of 34 hours, so each of the 2 friends works 17 hours.", "34", False),
    ],
)
def test_closing_total(response, gold, verdict):
    assert check(response, gold) is verdict


def test_a_closing_total_says_so():
    assert (extract(TOTAL).answer, extract(TOTAL).source) == ("34", "closing total")
    assert (extract(BOLD).answer, extract(BOLD).source) == ("\\frac{13}{2}", "closing math")
