"""The Libra-Mini domain: solutions verify, source models hit their accuracy, and their mistakes are real
ones that a judge recomputing the columns can find."""

import random
import re

import pytest

from libra.mini.arith import (
    BRACKET_FORMATS,
    SOURCE_MODELS,
    ArithProblem,
    Slip,
    answer_width,
    carry_columns,
    compare_lines,
    digit_variant,
    comparison_instruction,
    extraction_instruction,
    property_instruction,
    make_problems,
    near_miss,
    parse_question,
    pair_flags,
    respond,
    worked_solution,
    written_steps,
)
from libra.verify import extract_answer, verify_answer

_LINE = re.compile(r"(\d)\+(\d)\+(\d)=(\d+) write (\d+)(?: carry (\d))?")


def audit(problem: ArithProblem, text: str) -> tuple[list[int], int, str]:
    """What a careful reader finds in a response: the columns whose line is wrong, the sum its lines
    reach, and its boxed answer."""
    lines = text.split("\n")
    assert lines[-1].startswith("So the answer is \\boxed{") and lines[-1].endswith("}.")
    steps = lines[:-1]
    width = max(len(str(problem.a)), len(str(problem.b)))
    assert len(steps) == width
    bad, carry, written = [], 0, []
    for k, line in enumerate(steps):
        m = _LINE.fullmatch(line)
        assert m, line
        x, y, c, total, write = (int(g) for g in m.groups()[:5])
        last = k == width - 1
        assert (m[6] is None) == last
        right = (x == problem.a // 10**k % 10 and y == problem.b // 10**k % 10 and c == carry and total == x + y + c
                 and (write == total if last else (write, int(m[6])) == (total % 10, total // 10)))
        if not right:
            bad.append(k)
        carry = 0 if last else int(m[6])
        written.append(str(write))
    return bad, int("".join(reversed(written))), extract_answer(text)


def test_question_answer_and_parse():
    p = ArithProblem("p", 482, 739)
    assert (p.question, p.answer) == ("Compute 482 + 739.", "1221")
    assert parse_question(p.question) == (482, 739)
    with pytest.raises(ValueError, match="not a Libra-Mini addition question"):
        parse_question("Compute 4 - 3.")


def test_make_problems_distinct_seeded_and_sized():
    problems = make_problems(500, digits=(2, 3), seed=1)
    assert len({(p.a, p.b) for p in problems}) == len({p.id for p in problems}) == 500
    assert {len(str(p.a)) for p in problems} == {len(str(p.b)) for p in problems} == {2, 3}
    assert make_problems(500, digits=(2, 3), seed=1) == problems
    assert make_problems(500, digits=(2, 3), seed=2) != problems
    assert {len(str(p.a)) for p in make_problems(50, digits=(4,))} == {4}
    with pytest.raises(ValueError, match="distinct problems"):
        make_problems(82, digits=(1,))


def test_worked_solution_format_and_verification():
    assert worked_solution(ArithProblem("p", 482, 739)) == (
        "2+9+0=11 write 1 carry 1\n8+3+1=12 write 2 carry 1\n4+7+1=12 write 12\nSo the answer is \\boxed{1221}.")
    assert worked_solution(ArithProblem("p", 48, 7)).startswith("8+7+0=15 write 5 carry 1\n4+0+1=5 write 5\n")
    for p in make_problems(300, digits=(1, 2, 3, 4), seed=3):
        text = worked_solution(p)
        assert verify_answer(text, p.answer)
        assert audit(p, text) == ([], p.a + p.b, p.answer)


def test_slips_stay_consistent_after_the_mistake():
    # A forgotten carry at the tens: only that line is wrong, the later columns follow from it.
    lines, total = written_steps(482, 739, Slip(1, "carry"))
    assert lines == ["2+9+0=11 write 1 carry 1", "8+3+0=11 write 1 carry 1", "4+7+1=12 write 12"]
    assert total == 1211
    # A column added wrong changes the carries after it, and the sum by delta * 10**column.
    assert written_steps(482, 739, Slip(0, "add", -2))[1] == 1221 - 2
    assert written_steps(59, 41, Slip(1, "add", 1)) == (["9+1+0=10 write 0 carry 1", "5+4+1=11 write 11"], 110)
    # A misstated total keeps the right digit and carry: a wrong step, the right sum.
    assert written_steps(482, 739, Slip(1, "say", 1)) == (
        ["2+9+0=11 write 1 carry 1", "8+3+1=13 write 2 carry 1", "4+7+1=12 write 12"], 1221)
    assert carry_columns(482, 739) == [1, 2] and carry_columns(123, 456) == []


@pytest.mark.parametrize("model", SOURCE_MODELS, ids=lambda m: m.name)
def test_source_model_accuracy_near_its_level(model):
    problems = make_problems(2000, seed=0)
    rng = random.Random(11)
    accuracy = sum(verify_answer(respond(model, p, rng), p.answer) for p in problems) / len(problems)
    assert abs(accuracy - (1 - model.error_rate)) < 0.035, accuracy  # about 3 standard errors


def test_source_models_are_ordered_by_skill():
    rates = [m.error_rate for m in SOURCE_MODELS]
    assert len(SOURCE_MODELS) >= 3 and rates == sorted(rates) and rates[0] < 0.25 and rates[-1] > 0.55


def test_mistakes_are_real_and_findable():
    """Every wrong answer shows where it went wrong (a wrong line, or a box that is not what the lines
    reach); every kind of mistake occurs; some right answers come through a wrong step."""
    problems = make_problems(1500, seed=4)
    rng = random.Random(5)
    kinds = {"forgotten carry": 0, "column slip": 0, "miscopied answer": 0, "right answer, wrong step": 0}
    for p in problems:
        text = respond(SOURCE_MODELS[-1], p, rng)
        bad, reached, boxed = audit(p, text)
        lines = text.split("\n")
        if verify_answer(text, p.answer):
            assert boxed == p.answer
            kinds["right answer, wrong step"] += bool(bad)
            continue
        assert bad or reached != int(boxed)
        if not bad:
            kinds["miscopied answer"] += 1
            assert reached == p.a + p.b and len(boxed) in (len(p.answer), len(p.answer) - 1)
            continue
        assert len(bad) == 1 and reached == int(boxed)  # one mistake, the rest follows from it
        k = bad[0]
        previous_carry = int(lines[k - 1].rsplit(" ", 1)[1]) if k else 0
        if f"+{previous_carry}=" not in lines[k]:
            kinds["forgotten carry"] += 1
            assert reached == p.a + p.b - 10**k
        else:
            kinds["column slip"] += 1
            assert 0 < abs(reached - (p.a + p.b)) <= 2 * 10**k and (reached - p.a - p.b) % 10**k == 0
    assert min(kinds.values()) >= 20, kinds


def test_respond_is_deterministic_given_the_generator():
    p = make_problems(1, seed=9)[0]
    first = [respond(SOURCE_MODELS[-1], p, random.Random(s)) for s in range(30)]
    assert first == [respond(SOURCE_MODELS[-1], p, random.Random(s)) for s in range(30)]
    assert len(set(first)) > 3


def test_compare_lines_pads_and_flags_each_digit_pair():
    lines, same = compare_lines("132", "123", 3)
    assert lines == ["check 11= 32x 23x"] and not same
    # Each pair has its own flag: equal digits after a difference are flagged equal; one x means no match.
    assert compare_lines("1324", "1224", 4) == (["check 11= 32x 22= 44="], False)
    lines, same = compare_lines("87", "087", 3)
    assert lines == ["check 00= 88= 77="] and same
    # An answer longer than the width widens both sides; a non-number never matches.
    assert compare_lines("87", "1870", 3) == (["check 01x 08x 87x 70x"], False)
    assert compare_lines("87", "1087", 3) == (["check 01x 00= 88= 77="], False)
    assert compare_lines("87", "8 7", 3) == (["check 087 8 7 x"], False)
    assert compare_lines("87", None, 3) == (["check 087 none x"], False)
    assert pair_flags("050", "050") == "===" and pair_flags("050", "051") == "==x"


@pytest.fixture(scope="module")
def tokenizer_for_layout():
    """A tokenizer trained as Libra-Mini's is (digits split) on texts that hold the comparison layout."""
    from libra.models.tiny import train_tokenizer

    rng = random.Random(0)
    texts = [comparison_instruction(p.answer, near_miss(p.answer, rng), answer_width(p.a, p.b), rng)["response"]
             for p in make_problems(300, digits=(2,), seed=3)]
    return train_tokenizer(texts, vocab_size=384, split_digits=True)


@pytest.mark.parametrize("ours, theirs", [("132", "123"), ("1324", "1224"), ("087", "087")])
def test_compare_lines_put_each_flag_next_to_the_digits_it_compares(tokenizer_for_layout, ours, theirs):
    """The layout's point, on the tokens a Mini tokenizer makes of it: each pair is two single-digit tokens,
    ours then theirs, and flag k is the very next token, so a flag reads only its neighbours."""
    ids = tokenizer_for_layout("\n".join(compare_lines(ours, theirs, len(ours))[0]) + "\n")["input_ids"]
    tokens = [tokenizer_for_layout.decode([t]) for t in ids]
    digits = [i for i, t in enumerate(tokens) if t.isdigit()]
    assert len(digits) == 2 * len(ours)  # one token per digit
    firsts, seconds = digits[0::2], digits[1::2]
    assert all(b == a + 1 for a, b in zip(firsts, seconds))
    assert [tokens[a] for a in firsts] == list(ours) and [tokens[b] for b in seconds] == list(theirs)
    assert [tokens[b + 1] for b in seconds] == list(pair_flags(ours, theirs))


def test_digit_variant_differs_first_at_every_position():
    rng = random.Random(0)
    firsts = set()
    for _ in range(300):
        shown = digit_variant("132", 3, rng)
        padded = shown.zfill(3)
        assert shown != "132" and not (len(shown) > 1 and shown[0] == "0")
        firsts.add(next(k for k in range(3) if padded[k] != "132"[k]))
    assert firsts == {0, 1, 2}


@pytest.mark.parametrize("seed", range(5))
def test_comparison_instruction_is_a_skill_not_a_judgment(seed):
    rng = random.Random(seed)
    for p in make_problems(200, digits=(2,), seed=seed):
        shown = p.answer if rng.random() < 0.5 else near_miss(p.answer, rng)
        row = comparison_instruction(p.answer, shown, answer_width(p.a, p.b), rng)
        yes, no = re.findall(r"\[\[[^\]]+\]\]", row["prompt"])
        assert (yes, no) in BRACKET_FORMATS
        assert row["response"].endswith("</think>\n" + (yes if shown == p.answer else no))
        assert "Compute" not in row["prompt"] and "correct" not in row["prompt"].lower()  # no question, no verdict
        if shown != p.answer:
            assert shown.isdigit() and int(shown) != int(p.answer)


def test_near_misses_are_close_and_never_equal():
    rng = random.Random(0)
    for answer in ("87", "132", "100", "9", "198"):
        for _ in range(200):
            miss = near_miss(answer, rng)
            assert miss.isdigit() and int(miss) != int(answer) and abs(len(miss) - len(answer)) <= 1


def test_extraction_instruction_reads_without_judging():
    rng = random.Random(1)
    p = make_problems(1, digits=(2,), seed=4)[0]
    solution = respond(SOURCE_MODELS[2], p, rng)
    row = extraction_instruction(solution, extract_answer(solution))
    assert solution in row["prompt"] and row["response"] == f"[[{extract_answer(solution)}]]"
    assert "correct" not in row["prompt"].lower() and "Compute" not in row["prompt"]  # no question, no verdict asked


@pytest.mark.parametrize("seed", range(3))
def test_property_instruction_asks_about_the_number_not_the_solution(seed):
    rng = random.Random(seed)
    seen = set()
    for p in make_problems(200, digits=(2,), seed=seed):
        solution = respond(SOURCE_MODELS[1], p, rng)
        answer = extract_answer(solution)
        row = property_instruction(solution, answer, rng)
        yes, no = re.findall(r"\[\[[^\]]+\]\]", row["prompt"])
        assert (yes, no) in BRACKET_FORMATS and solution in row["prompt"]
        assert "correct" not in row["prompt"].lower() and "Compute" not in row["prompt"]  # no question, no verdict
        think, verdict = row["response"].split("</think>\n")
        assert think.startswith(f"<think>\nanswer {answer}\n")
        # The verdict follows from the number alone, computed here independently per property.
        if "is even" in row["prompt"]:
            truth = int(answer) % 2 == 0
        elif "three digits" in row["prompt"]:
            truth = len(answer) == 3
        else:
            truth = int(answer) % 5 == 0
        assert verdict == (yes if truth else no)
        seen.add((row["prompt"].splitlines()[0], verdict == yes))
    assert len(seen) == 6  # every property, answered both ways
