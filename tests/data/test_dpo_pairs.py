"""Preference pairs from a judge's predictions (paper section 6)."""
import json

from libra.cli import main
from libra.data.pairs import build_pairs


def test_pairs_match_the_smaller_count_per_question():
    judged = [{"question": "q1", "response": r, "judged_correct": c}
              for r, c in (("a", True), ("b", False), ("c", True), ("d", True), ("e", False))]
    judged += [{"question": "q2", "response": "x", "judged_correct": True}]
    assert build_pairs(judged) == [{"prompt": "q1", "chosen": "a", "rejected": "b"},
                                   {"prompt": "q1", "chosen": "c", "rejected": "e"}]


def test_cli_joins_bench_rows_with_majority_predictions(tmp_path, capsys):
    bench = tmp_path / "bench.jsonl"
    rows = [{"id": str(i), "question": "q", "response": f"r{i}", "label": True} for i in range(4)]
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds = tmp_path / "predictions.jsonl"
    votes = {"0": [True, True, False], "1": [False, False, None], "2": [True, False], "3": [None, None]}
    preds.write_text("".join(json.dumps({"id": i, "sample": k, "pred": p}) + "\n"
                             for i, ps in votes.items() for k, p in enumerate(ps)))
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "dpo-pairs", "--bench", str(bench), "--predictions", str(preds), "--out", str(out)]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"prompt": "q", "chosen": "r0", "rejected": "r1"}]  # rows 2 (tie) and 3 (no valid vote) are left out
    assert "2 judged responses over 1 questions -> 1 pairs" in capsys.readouterr().out
