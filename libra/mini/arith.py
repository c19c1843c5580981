"""The Libra-Mini reasoning domain: multi-digit addition written out column by column.

Why addition: checking an answer takes real computation (a judge must redo the columns, carries included),
the gold answer is exact, and a tiny transformer can learn the steps. Every solution has one line per
column, units first, each naming the two digits and the carry coming in, so each line is computable from
the question and the line before it::

    2+9+0=11 write 1 carry 1
    8+3+1=12 write 2 carry 1
    4+7+1=12 write 12
    So the answer is \\boxed{1221}.

Source models write the same shape and make the mistakes real solvers make: a forgotten carry, a column
added wrong, a digit dropped or swapped when copying the answer, and sometimes a right answer reached
through a wrong step. Their steps follow from the mistake (a wrong column changes the carries after it),
so a judge that recomputes can see where they went wrong; labels come from the final answer alone, as in
the paper.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_QUESTION = re.compile(r"Compute (\d+) \+ (\d+)\.")


@dataclass(frozen=True)
class ArithProblem:
    id: str
    a: int
    b: int

    @property
    def question(self) -> str:
        return f"Compute {self.a} + {self.b}."

    @property
    def answer(self) -> str:
        return str(self.a + self.b)


def parse_question(question: str) -> tuple[int, int]:
    """The two operands of a question written by ``ArithProblem.question``; ValueError for anything else."""
    match = _QUESTION.fullmatch(question.strip())
    if match is None:
        raise ValueError(f"not a Libra-Mini addition question: {question[:80]!r}")
    return int(match[1]), int(match[2])


def make_problems(n: int, digits: tuple[int, ...] = (2, 3), seed: int = 0) -> list[ArithProblem]:
    """``n`` distinct problems; each operand's digit count is drawn from ``digits``. The id names the
    operands, so it is stable across seeds and sizes (caches and splits can key on it)."""
    if not digits or min(digits) < 1:
        raise ValueError(f"digit counts must be >= 1, got {digits}")
    per_operand = sum(9 * 10 ** (d - 1) for d in set(digits))
    if n > per_operand**2:
        raise ValueError(f"only {per_operand**2} distinct problems have operands of {digits} digits; asked for {n}")
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        a, b = (rng.randrange(10 ** (d - 1), 10**d) for d in (rng.choice(digits), rng.choice(digits)))
        if (a, b) not in seen:
            seen.add((a, b))
            out.append(ArithProblem(f"add-{a}-{b}", a, b))
    return out


@dataclass(frozen=True)
class Slip:
    """One mistake in one column (0 = units).

    ``kind``: "carry" drops the carry coming into the column; "add" gets the column's total wrong by
    ``delta`` and goes on from the wrong total; "say" writes a total off by ``delta`` but writes the digit
    and carry of the true total (a wrong step that does not change the answer).
    """

    column: int
    kind: str
    delta: int = 0


def written_steps(a: int, b: int, slip: Slip | None = None) -> tuple[list[str], int]:
    """The column lines for ``a + b`` made with ``slip``, and the sum those lines reach."""
    xs, ys = _digits(a), _digits(b)
    width = max(len(xs), len(ys))
    xs, ys = xs + [0] * (width - len(xs)), ys + [0] * (width - len(ys))
    lines, written, carry = [], [], 0
    for k, (x, y) in enumerate(zip(xs, ys)):
        here = slip if slip is not None and slip.column == k else None
        c = 0 if here and here.kind == "carry" else carry
        total = x + y + c + (here.delta if here and here.kind == "add" else 0)
        shown = total + (here.delta if here and here.kind == "say" else 0)
        last = k == width - 1
        # The last column writes its whole total: the final carry is the answer's leading digit.
        carry, digit = (0, total) if last else divmod(total, 10)
        written.append(digit)
        lines.append(f"{x}+{y}+{c}={shown} write {digit}" + ("" if last else f" carry {carry}"))
    return lines, int("".join(map(str, reversed(written))))


def random_slip(a: int, b: int, rng: random.Random, kind: str) -> Slip:
    """A ``kind`` slip at a column where it is possible: "carry" needs a column with a carry coming in
    (without one it becomes an "add" slip); the delta keeps the column total a plausible 0-19."""
    columns = carry_columns(a, b)
    if kind == "carry" and columns:
        return Slip(rng.choice(columns), "carry")
    kind = "add" if kind == "carry" else kind
    totals = _true_totals(a, b)
    column = rng.randrange(len(totals))
    delta = rng.choice([d for d in (-2, -1, 1, 2) if 0 <= totals[column] + d <= 19])
    return Slip(column, kind, delta)


def carry_columns(a: int, b: int) -> list[int]:
    """Columns with a carry coming in (where a carry can be forgotten)."""
    return [k for k in range(1, len(_true_totals(a, b))) if a % 10**k + b % 10**k >= 10**k]


def _true_totals(a: int, b: int) -> list[int]:
    """Each column's right total (its two digits and the carry coming in), units first."""
    width = max(len(str(a)), len(str(b)))
    return [(a // 10**k) % 10 + (b // 10**k) % 10 + (a % 10**k + b % 10**k >= 10**k) for k in range(width)]


def worked_solution(problem: ArithProblem) -> str:
    lines, total = written_steps(problem.a, problem.b)
    return _response(lines, str(total))


@dataclass(frozen=True)
class SourceModel:
    """A response generator. ``error_rate``: share of responses with a wrong final answer;
    ``wrong_step_rate``: share of the right-answer responses that still contain a wrong step."""

    name: str
    error_rate: float
    wrong_step_rate: float


SOURCE_MODELS = (
    SourceModel("careful", 0.15, 0.05),
    SourceModel("average", 0.4, 0.1),
    SourceModel("sloppy", 0.65, 0.15),
)
# How a wrong answer comes about: a forgotten carry, a column added wrong, the answer miscopied.
_WRONG_KINDS = ("carry", "add", "copy")
_WRONG_WEIGHTS = (0.35, 0.35, 0.3)


def respond(model: SourceModel, problem: ArithProblem, rng: random.Random) -> str:
    """One response of ``model`` to ``problem``, in the shape of ``worked_solution``.

    Every wrong-answer mistake changes the sum (by a power of ten, or by a different digit string), so the
    share of wrong answers is exactly ``model.error_rate`` in expectation.
    """
    a, b, gold = problem.a, problem.b, problem.answer
    if rng.random() < model.error_rate:
        kind = rng.choices(_WRONG_KINDS, _WRONG_WEIGHTS)[0]
        if kind == "copy":
            return _response(written_steps(a, b)[0], _miscopy(gold, rng))
        lines, total = written_steps(a, b, random_slip(a, b, rng, kind))
        return _response(lines, str(total))
    if rng.random() < model.wrong_step_rate:
        # Either a misstated column total whose digit and carry are still right, or real slipped steps
        # under a final answer copied right (from a scratch computation the response does not show).
        kind = rng.choice(("say", "carry", "add"))
        return _response(written_steps(a, b, random_slip(a, b, rng, kind))[0], gold)
    return worked_solution(problem)


def _miscopy(answer: str, rng: random.Random) -> str:
    """``answer`` with one digit dropped or two neighbouring different digits swapped; never a leading zero,
    never the same number."""
    if len(answer) == 1:  # nothing to drop or swap: a neighbouring digit is written instead
        return str(int(answer) + (1 if answer == "0" or (answer != "9" and rng.random() < 0.5) else -1))
    swaps = [i for i in range(len(answer) - 1) if answer[i] != answer[i + 1] and not (i == 0 and answer[1] == "0")]
    if swaps and rng.random() < 0.5:
        i = rng.choice(swaps)
        return answer[:i] + answer[i + 1] + answer[i] + answer[i + 2 :]
    drops = [i for i in range(len(answer)) if not (i == 0 and answer[1:2] == "0")]
    i = rng.choice(drops)
    return answer[:i] + answer[i + 1 :]


AGREE, DIFFER = "=", "x"  # the flags of ``compare_lines``


def compare_lines(ours: str, theirs: str | None, width: int) -> tuple[list[str], bool]:
    """Two answers compared digit by digit, the way a small model can: both right-aligned to the same
    ``width`` (zero-padded) and written as one line of digit pairs, each pair (our digit, then theirs)
    followed by its flag, ``=`` where the two digits are equal and ``x`` where they differ; the answers
    match when no flag is ``x``::

        check 11= 32x 23x

    Why this layout: a flag is predicted at the token of the digit it follows, and all it needs is that
    digit and the one just before it; nothing is looked up at a distance, so the check learnt on short
    comparison instructions carries into a long judging prompt, and each pair is a lesson in equality of
    its own (a running flag, ``x`` from the first difference on, carries none after that difference). The
    digits themselves are copied (ours from the column lines, theirs from the response), which small models
    do well. Trained alone on 2,000 comparison instructions (5 epochs, two seeds), a 2-layer model got
    96.5% of verdicts right with these flags and 82% with running ones; with the compared digits on two
    lines (``sum 1 3 2`` / ``answer 1=2x3x``, each flag a fixed-distance lookup) a 2-layer judge's flags
    stayed at chance on the bench. ``theirs`` that is not a digit string is written as given, followed by
    one ``x``. Returns the lines and whether the answers are the same number."""
    if theirs is None or not theirs.isdigit():
        shown = "none" if theirs is None else " ".join(theirs.split())
        return [f"check {ours.zfill(width)} {shown} {DIFFER}"], False
    width = max(width, len(ours), len(theirs))
    a, b = ours.zfill(width), theirs.zfill(width)
    return ["check " + " ".join(x + y + f for x, y, f in zip(a, b, pair_flags(a, b)))], a == b


def pair_flags(ours: str, theirs: str) -> str:
    """The flags of ``compare_lines`` for two equal-width digit strings: ``=`` for each equal digit pair."""
    return "".join(AGREE if x == y else DIFFER for x, y in zip(ours, theirs))


def answer_width(a: int, b: int) -> int:
    """The padded width of answers to ``a + b``: one digit more than the longer operand (room for the carry)."""
    return max(len(str(a)), len(str(b))) + 1


# Non-judging instruction data for the base model ("pretraining"): tasks whose answers come in a bracket
# format the prompt states, so the base, like a pretrained model, follows an output format it is told
# about. The formats vary so that what is learnt is "answer in the format asked for", not one verdict.
BRACKET_FORMATS = (("[[yes]]", "[[no]]"), ("[[score=4]]", "[[score=0]]"), ("[[same]]", "[[differ]]"),
                   ("[[1]]", "[[0]]"), ("[[A]]", "[[B]]"))


def comparison_instruction(x: str, y: str, width: int, rng: random.Random) -> dict:
    """"Does the answer match the sum?" with a stated bracket format; the response compares digit by digit
    inside ``<think>`` (``compare_lines``) and answers in that format. No question, no response to judge:
    a skill, not judging data."""
    yes, no = rng.choice(BRACKET_FORMATS)
    lines, same = compare_lines(x, y, width)
    prompt = (f"Does the answer {y} match the sum {x}? Compare digit by digit.\n"
              f"Verdict: {yes} if they match, {no} if not.")
    return {"prompt": prompt, "response": "<think>\n" + "\n".join(lines) + f"\n</think>\n{yes if same else no}"}


def extraction_instruction(solution: str, answer: str) -> dict:
    """"What is this solution's final answer?": a prompt that holds a whole solution, as judging prompts do,
    answered in brackets. Reading, not judging: no correctness is asked or given."""
    return {"prompt": f"Read the solution and copy its final answer.\nSolution:\n{solution}\nAnswer in the form [[N]].",
            "response": f"[[{answer}]]"}


# Questions about a solution's final answer that take a short look, not a judgment: (the property, what the
# thinking does, the check, the thinking's line).
_PROPERTIES = (
    ("is even", "look at its last digit", lambda n: int(n[-1]) % 2 == 0, lambda n: f"last digit {n[-1]}"),
    ("has three digits", "count its digits", lambda n: len(n) == 3, lambda n: f"digits {len(n)}"),
    ("ends in 0 or 5", "look at its last digit", lambda n: n[-1] in "05", lambda n: f"last digit {n[-1]}"),
)


def property_instruction(solution: str, answer: str, rng: random.Random) -> dict:
    """"Is this solution's final answer even?" (or another property): a prompt laid out like a judging prompt
    (a task line, a whole solution, an invitation to think, a stated two-way verdict format), answered by
    thinking inside ``<think>`` and then a verdict in that format. It asks about the number, never whether
    the solution is right, so a base trained on it has learnt to read, think and answer in a format it is
    told about, as a pretrained model has, without ever seeing a judgment (RL-zero's fair start)."""
    name, how, check, line = rng.choice(_PROPERTIES)
    yes, no = rng.choice(BRACKET_FORMATS)
    prompt = (f"Say whether the solution's final answer {name}.\nSolution:\n{solution}\n"
              f"First think inside <think> </think>: copy its final answer, then {how}.\n"
              f"Verdict: {yes} if it {name}, {no} if not.")
    response = f"<think>\nanswer {answer}\n{line(answer)}\n</think>\n{yes if check(answer) else no}"
    return {"prompt": prompt, "response": response}


def near_miss(answer: str, rng: random.Random) -> str:
    """A number close to ``answer`` of the kinds wrong answers take (a miscopy, or off by 1, 10 or 100),
    so comparison practice meets the differences a judge must catch."""
    value = int(answer)
    nearby = [value + d for d in (-100, -10, -1, 1, 10, 100) if value + d > 0 and abs(len(str(value + d)) - len(answer)) <= 1]
    if rng.random() < 0.5 or not nearby:
        return _miscopy(answer, rng)
    return str(rng.choice(nearby))


def digit_variant(answer: str, width: int, rng: random.Random) -> str:
    """A number that first differs from ``answer`` (zero-padded to ``width``) at a position drawn uniformly,
    the digits after it kept or redrawn: comparison practice with differences in every column, which
    ``near_miss`` (most wrong answers differ in the tens) does not give. No leading zeros in the result."""
    padded = answer.zfill(width)
    k = rng.randrange(width)
    digits = list(padded)
    digits[k] = rng.choice([d for d in "0123456789" if d != padded[k]])
    for j in range(k + 1, width):
        if rng.random() < 0.3:
            digits[j] = rng.choice("0123456789")
    return str(int("".join(digits)))


def _digits(n: int) -> list[int]:
    """Decimal digits of ``n``, units first."""
    return [int(d) for d in reversed(str(n))]


def _response(lines: list[str], answer: str) -> str:
    return "\n".join(lines) + f"\nSo the answer is \\boxed{{{answer}}}."
