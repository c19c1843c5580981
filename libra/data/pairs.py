"""Preference pairs from a reward model's judgments (the paper's DPO study, section 6): per query, one
response the RM judged correct and one it judged wrong, as many pairs as the smaller count. No gold
answer is used: this is how an RM labels unlabeled RL data."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from .bench import load_bench
from .jsonl import DataError, SkipCounter, read_jsonl, reject


def build_pairs(judged: list[dict]) -> list[dict]:
    """Rows ``{question, response, judged_correct}`` -> ``{prompt, chosen, rejected}``: per question the i-th
    judged-correct response with the i-th judged-wrong one, in input order; questions the judge called
    all correct (or all wrong) give none."""
    by_question: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for row in judged:
        by_question[row["question"]][0 if row["judged_correct"] else 1].append(row["response"])
    return [{"prompt": q, "chosen": c, "rejected": w}
            for q, (good, bad) in by_question.items() for c, w in zip(good, bad)]


def judged_rows(bench: str | Path, predictions: str | Path, skip_bad: SkipCounter | None = None) -> list[dict]:
    """Join bench rows with a judge's ``predictions.jsonl`` (``libra eval libra-bench``) by row id. With
    several samples per row the majority of valid predictions decides; a tie or no valid prediction
    leaves the row out (the RM gave no usable label)."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for rec in read_jsonl(predictions, skip_bad=skip_bad):
        try:
            pred = rec.get("pred", bool, required=False)
            votes[str(rec.get("id", (str, int)))][pred] += pred is not None
        except DataError as err:
            reject(err, skip_bad)
    rows = []
    for row in load_bench(str(bench), skip_bad=skip_bad):
        count = votes.get(row["id"], Counter())
        if count[True] != count[False]:
            rows.append({"question": row["question"], "response": row["response"],
                         "judged_correct": count[True] > count[False]})
    return rows
