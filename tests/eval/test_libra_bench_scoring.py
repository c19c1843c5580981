"""Libra Bench scoring on hand-made judgments: verdict parsing, thresholds, invalid answers, n > 1, tables."""

import pytest

from libra.eval.libra_bench import (
    accuracy_table,
    build_requests,
    check_template,
    majority_vote,
    score_records,
    summarize,
)
from libra.eval.metrics import accuracy_at_thresholds

ROWS = [
    {"id": "a1", "subset": "aime", "source_model": "m1", "question": "q1", "response": "r1", "label": True},
    {"id": "a2", "subset": "aime", "source_model": "m2", "question": "q2", "response": "r2", "label": False},
    {"id": "m1", "subset": "math", "source_model": "m1", "question": "q3", "response": "r3", "label": True},
    {"id": "m2", "subset": "math", "source_model": "m2", "question": "q4", "response": "r4", "label": False},
]


def _records(*texts_per_row, tokens=10, finish="stop"):
    return [{"samples": [{"text": t, "finish_reason": finish, "num_tokens": tokens} for t in texts]}
            for texts in texts_per_row]


def _flat(per_row):
    return [p for row in per_row for p in row]


def test_pointwise_verdicts_thresholds_and_invalid_answers():
    records = _records(["so [[score=3]]"], ["[[score = 2]]"], ["no verdict at all"], ["[[score=7]]"])
    preds = _flat(score_records(ROWS, records, "pointwise", threshold=2))
    assert [p["score"] for p in preds] == [3, 2, None, None]  # 7 is out of range: invalid, not clipped
    assert [p["valid"] for p in preds] == [True, True, False, False]
    assert [p["pred"] for p in preds] == [True, True, None, None]
    assert [p["pred"] for p in _flat(score_records(ROWS, records, "pointwise", threshold=3))] == [True, False, None,
                                                                                                   None]
    assert {k: preds[0][k] for k in ("id", "subset", "source_model", "label", "sample")} == \
        {"id": "a1", "subset": "aime", "source_model": "m1", "label": True, "sample": 0}


def test_the_answer_after_think_wins_over_labels_quoted_while_thinking():
    records = _records(["<think>maybe [[score=0]]</think>final: [[score=4]]"],
                       ["<think>it is [[score=1]]</think>I am not sure."],
                       ["[[score=4]] ... on reflection [[score=1]]"], ["</think>"])
    assert [p["score"] for p in _flat(score_records(ROWS, records, "pointwise", 2))] == [4, 1, 1, None]


def test_verification_verdicts():
    records = _records(["[[Correct]]"], ["**[[Wrong]]**"], ["[[correct]] then [[WRONG]]"], ["Correct"])
    preds = _flat(score_records(ROWS, records, "verification", 2))
    assert [p["verdict"] for p in preds] == [True, False, False, None]
    assert [p["pred"] for p in preds] == [True, False, False, None]
    assert "score" not in preds[0]


def test_summarize_single_sample():
    # a1 right (4 >= 2, label T), a2 wrong (3 >= 2, label F), m1 invalid (label T), m2 right (0 < 2, label F)
    records = _records(["[[score=4]]"], ["[[score=3]]"], ["?"], ["[[score=0]]"])
    records[2]["samples"][0].update(finish_reason="length", num_tokens=30)
    metrics = summarize(score_records(ROWS, records, "pointwise", 2), "pointwise", bootstrap=200)
    assert metrics["rows"] == metrics["n"] == 4
    assert metrics["accuracy"] == 0.5 and metrics["average"] == 0.5
    assert metrics["subsets"] == {"aime": {"n": 2, "accuracy": 0.5}, "math": {"n": 2, "accuracy": 0.5}}
    assert metrics["source_models"] == {"m1": {"n": 2, "accuracy": 0.5}, "m2": {"n": 2, "accuracy": 0.5}}
    assert metrics["confusion"] == {"tp": 1, "tn": 1, "fp": 1, "fn": 0, "invalid_pos": 1, "invalid_neg": 0}
    assert metrics["invalid_rate"] == 0.25
    assert metrics["mean_judgment_tokens"] == pytest.approx((10 + 10 + 30 + 10) / 4)
    assert metrics["finish_reasons"] == {"length": 1, "stop": 3}
    low, high = metrics["average_ci95"]
    assert 0 <= low <= metrics["average"] <= high <= 1 and low < high
    expected = accuracy_at_thresholds([4, 3, None, 0], [True, False, True, False])
    assert {int(t): m["accuracy"] for t, m in metrics["by_threshold"].items()} == expected
    assert metrics["by_threshold"]["4"]["accuracy"] == 0.75  # only the 4 is judged correct: a2 becomes right
    assert "majority" not in metrics


def test_summarize_n_samples_pools_judgments_and_adds_majority_vote():
    records = _records(
        ["[[score=4]]", "[[score=3]]", "[[score=0]]"],  # label T: 2 of 3 right; majority T (right)
        ["[[score=4]]", "?", "[[score=0]]"],  # label F: 1 right, 1 invalid; valid votes tie -> invalid
        ["?", "?", "[[score=1]]"],  # label T: 0 right; majority F (wrong)
        ["[[score=1]]", "[[score=0]]", "[[score=3]]"],  # label F: 2 right; majority F (right)
    )
    per_row = score_records(ROWS, records, "pointwise", 2)
    metrics = summarize(per_row, "pointwise", bootstrap=100)
    assert metrics["n"] == 12 and metrics["rows"] == 4
    assert metrics["accuracy"] == pytest.approx(5 / 12)
    assert metrics["subsets"]["aime"]["accuracy"] == pytest.approx(3 / 6)
    assert metrics["average"] == pytest.approx((3 / 6 + 2 / 6) / 2)
    # pooling equals the mean over sample indices, because every row has the same number of samples
    per_index = [summarize([[row[k]] for row in per_row], "pointwise", bootstrap=10)["average"] for k in range(3)]
    assert metrics["average"] == pytest.approx(sum(per_index) / 3)
    majority = metrics["majority"]
    assert majority["n"] == 4 and majority["accuracy"] == 0.5 and majority["invalid_rate"] == 0.25
    assert majority["subsets"] == {"aime": {"n": 2, "accuracy": 0.5}, "math": {"n": 2, "accuracy": 0.5}}
    assert len(majority["average_ci95"]) == 2
    headers, rows = accuracy_table("judge", metrics)
    assert headers == ["Model", "aime", "math", "Average"]
    assert rows == [["judge", "50.0", "33.3", "41.7"], ["judge (majority vote)", "50.0", "50.0", "50.0"]]


def test_majority_vote_ties_and_no_valid_sample_are_invalid():
    base = {"id": "x", "subset": "s", "source_model": "m", "label": True}
    assert majority_vote([{**base, "pred": p} for p in (True, None, False)])["pred"] is None
    assert majority_vote([{**base, "pred": None}] * 2)["pred"] is None
    assert majority_vote([{**base, "pred": p} for p in (False, None, False, True)]) == {**base, "pred": False}


def test_requests_carry_the_prompt_digest_so_edited_rows_are_regenerated():
    fields = check_template("pointwise")
    first = build_requests(ROWS[:1], "pointwise", fields)[0]
    assert first.prompt[0]["role"] == "user" and "r1" in first.prompt[0]["content"]
    assert first.sample_id.startswith("a1#")
    assert build_requests(ROWS[:1], "pointwise", fields)[0].sample_id == first.sample_id
    edited = build_requests([{**ROWS[0], "response": "r1 edited"}], "pointwise", fields)[0]
    assert edited.sample_id.startswith("a1#") and edited.sample_id != first.sample_id


def test_templates_a_bench_row_cannot_fill_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="reference"):
        check_template("verification")  # it needs the gold answer, which bench rows do not carry
    with pytest.raises(ValueError, match="unknown template"):
        check_template("no-such-template")
    custom = tmp_path / "judge.txt"
    custom.write_text("Is this right? {question}\n{response}\nSay [[Correct]] or [[Wrong]].\n")
    assert check_template(str(custom)) == {"question", "response"}
