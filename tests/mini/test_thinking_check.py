"""The line-by-line check of thinking judgments: judgments built by the teacher (right, slipped), a skim,
hand-corrupted copies and flags, and the shares ``check_eval`` computes from an evaluation folder."""
import json
import random

import pytest

from libra.mini.teacher import judge_text, skim_text
from libra.mini.arith import pair_flags
from libra.mini.thinking_check import check_eval, score_judgment

Q = "Compute 36 + 14."
RIGHT = "6+4+0=10 write 0 carry 1\n3+1+1=5 write 5\nSo the answer is \\boxed{50}."
WRONG = "6+4+0=10 write 0 carry 1\n3+1+0=4 write 4\nSo the answer is \\boxed{40}."


def test_pair_flags():
    assert pair_flags("050", "050") == "===" and pair_flags("050", "040") == "=x="
    assert pair_flags("132", "123") == "=xx" and pair_flags("050", "051") == "==x"


def test_teacher_judgments_score_as_what_they_are():
    rng = random.Random(0)
    clean = score_judgment(judge_text(Q, WRONG, slip=False, rng=rng), Q, WRONG, verdict=False)
    assert clean == {"kind": "check", "sum_right": True, "answer_right": True, "differ": True, "flags_right": True,
                     "verdict_follows_flags": True}
    same = score_judgment(judge_text(Q, RIGHT, slip=False, rng=rng), Q, RIGHT, verdict=True)
    assert same["differ"] is False and same["flags_right"] and same["verdict_follows_flags"]
    slipped = score_judgment(judge_text(Q, RIGHT, slip=True, rng=random.Random(3)), Q, RIGHT, verdict=False)
    assert slipped["sum_right"] is False and slipped["flags_right"] and slipped["differ"]  # flags read its own sum
    assert score_judgment(skim_text(RIGHT), Q, RIGHT, verdict=True) == {"kind": "skim"}
    assert score_judgment("[[score=4]]", Q, RIGHT, verdict=True) == {"kind": "other"}
    # No answer to copy: written as "none" and flagged x, which a "wrong" verdict follows.
    missing = score_judgment(judge_text(Q, "I am not sure.", slip=False, rng=rng), Q, "I am not sure.", verdict=False)
    assert missing["answer_right"] is False and missing["differ"] and missing["verdict_follows_flags"]
    assert missing["flags_right"] is False  # the flags are read only against a copied number


def test_corrupted_lines_are_caught():
    text = judge_text(Q, WRONG, slip=False, rng=random.Random(0))
    assert "\ncheck 00= 54x 00=\n" in text
    flags = score_judgment(text.replace("00= 54x 00=", "00= 54= 00="), Q, WRONG, verdict=False)
    assert flags["flags_right"] is False and flags["verdict_follows_flags"] is False  # all = would say correct
    copy = score_judgment(text.replace("00= 54x 00=", "00= 54x 01x"), Q, WRONG, verdict=False)
    assert copy["answer_right"] is False and copy["flags_right"] is True
    assert score_judgment(text, Q, WRONG, verdict=None)["verdict_follows_flags"] is False  # no verdict


def test_check_eval_shares(tmp_path):
    bench = tmp_path / "bench.jsonl"
    rows = [{"id": "bench/r", "question": Q, "response": RIGHT, "label": True},
            {"id": "bench/w", "question": Q, "response": WRONG, "label": False}]
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = random.Random(0)
    right_check = judge_text(Q, RIGHT, slip=False, rng=rng)
    wrong_check = judge_text(Q, WRONG, slip=False, rng=rng)
    flipped = wrong_check.replace("00= 54x 00=", "00= 54= 00=")
    gens = [{"id": "bench/r#abc", "samples": [{"text": right_check}, {"text": skim_text(RIGHT)}]},
            {"id": "bench/w#def", "samples": [{"text": wrong_check}, {"text": flipped}]}]
    preds = [{"id": i, "sample": k, "pred": p, "valid": True}
             for i, k, p in (("bench/r", 0, True), ("bench/r", 1, True), ("bench/w", 0, False), ("bench/w", 1, True))]
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "generations.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gens))
    (folder / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    got = check_eval(folder, bench)
    assert got["judgments"] == 4 and got["skims"] == 0.25 and got["checks"] == 0.75
    assert got["sum_right"] == 1.0 and got["answer_right"] == 1.0
    assert got["checks_equal"] == 1 and got["flags_right_equal"] == 1.0
    assert got["checks_differ"] == 2 and got["flags_right_differ"] == 0.5
    assert got["verdict_follows_flags"] == pytest.approx(1.0)  # the corrupted all-= flags were followed by "correct"
