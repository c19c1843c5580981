"""Problem and response loaders on the real files in ../shared/data (counts from their PROVENANCE.md)."""

from collections import Counter
from pathlib import Path

import pytest

from libra.data.jsonl import DataError, SkipCounter
from libra.data.sources import load_problems, load_responses, question_key

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def test_math500_and_aime_problems():
    math = load_problems(DATA / "math500" / "test.jsonl", "math500")
    assert len(math) == 500 and Counter(p.level for p in math)[5] == 134
    assert math[0].gold == "\\left( 3, \\frac{\\pi}{2} \\right)" and math[0].problem_id == "test/precalculus/807.json"
    aime = load_problems(DATA / "aime2024" / "test.jsonl", "aime2024")
    assert len(aime) == 30 and all(p.level is None for p in aime)


@pytest.mark.parametrize("name, n, n_true", [
    ("math500/Qwen2.5-Math-7B.jsonl", 500, 262),                       # Qwen2.5-Math harness
    ("math500/Qwen2.5-32B-Instruct_still2_sys_zero.json", 500, 370),   # SkyThought tools
    ("aime24/Sky-T1-math-correct-5K-32B-ckpt140.jsonl", 30, 9),
])
def test_skythought_responses(name, n, n_true):
    rows = load_responses(DATA / "skythought_eval_outputs" / name)
    assert len(rows) == n and sum(r.source_label for r in rows) == n_true
    assert rows[0].source_model == Path(name).stem and rows[0].origin.endswith(":1")


def test_qwen_harness_with_eight_samples_per_problem():
    rows = load_responses(DATA / "qwen25math_rm_maj_example" / "math_cot_100.jsonl", source_model="qwen")
    assert len(rows) == 800 and Counter(r.source_label for r in rows)[True] == 728
    assert {r.sample for r in rows} == set(range(8))


def test_bad_response_records_are_located(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text('{"question": "q", "code": ["a", "b"], "score": [true]}\n{"question": "q", "code": ["a"], '
                 '"score": ["yes"]}\n{"question": "q", "response": "fine"}\n')
    with pytest.raises(DataError, match=r"r\.jsonl:1: score: 1 scores for 2 responses"):
        load_responses(f)
    skipped = SkipCounter()
    rows = load_responses(f, skip_bad=skipped)
    assert [r.text for r in rows] == ["fine"] and skipped.skipped == 2
    assert "r.jsonl:2: score: expected true/false, got 'yes'" in skipped.examples[1]


def test_question_key_ignores_rewrapping():
    assert question_key("What is\n 1 +  1?") == question_key("What is 1 + 1? ")
