"""Judging rows split by problem into training rows and a held-out bench.

A V2V set has several responses to each problem (one per source model, balanced by label). Splitting the
rows at random would put responses to the same problem on both sides, and a judge trained on them would be
evaluated on problems whose gold answer and typical mistakes it has already seen. So the unit of the split
is the problem (its question text, whitespace-collapsed as V2V joins it, within its subset): every problem's
rows go to one side, and the held-out share is drawn per subset so a small subset (AIME) is held out too.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from .sources import question_key


def problem_of(row: dict) -> tuple[str, str]:
    """The problem a judging row belongs to: (subset, question text with whitespace collapsed)."""
    return str(row.get("subset", "all")), question_key(row["question"])


def split_by_problem(rows: Sequence[dict], *, bench_fraction: float, seed: int = 0
                     ) -> tuple[list[dict], list[dict]]:
    """``(train, bench)``: each subset's problems are shuffled (seeded) and ``round(bench_fraction * n)`` of
    them are held out with all their rows; where a subset has two or more problems and the fraction is above
    0, that is at least one and at most all but one, so each side sees every subset. Both sides keep the
    input order."""
    if not 0 <= bench_fraction <= 1:
        raise ValueError(f"bench_fraction must lie in [0, 1], got {bench_fraction}")
    by_subset: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        subset, problem = problem_of(row)
        by_subset[subset].add(problem)
    rng = random.Random(seed)
    held: set[tuple[str, str]] = set()
    for subset in sorted(by_subset):
        problems = sorted(by_subset[subset])
        rng.shuffle(problems)
        k = round(bench_fraction * len(problems))
        if bench_fraction > 0 and len(problems) > 1:
            k = min(max(k, 1), len(problems) - 1)
        held.update((subset, p) for p in problems[:k])
    train = [r for r in rows if problem_of(r) not in held]
    bench = [r for r in rows if problem_of(r) in held]
    return train, bench


def split_counts(train: Sequence[dict], bench: Sequence[dict]) -> dict:
    """Rows, problems and labels of each side per subset, and the problems both sides share (0 by design;
    recomputed from the rows, so a caller can show it rather than assume it)."""

    def side(rows: Sequence[dict]) -> dict:
        out: dict[str, dict] = {}
        for subset in sorted({problem_of(r)[0] for r in rows}):
            mine = [r for r in rows if problem_of(r)[0] == subset]
            out[subset] = {"rows": len(mine), "problems": len({problem_of(r) for r in mine}),
                           "correct": sum(bool(r.get("label")) for r in mine)}
        return out

    shared = {problem_of(r) for r in train} & {problem_of(r) for r in bench}
    return {"train": side(train), "bench": side(bench), "shared_problems": len(shared)}
