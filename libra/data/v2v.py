"""V2V: turn verifiable reasoning (problems, gold answers, sampled responses) into verifiable judging.

Following the paper's Libra Bench curation (section 3 and appendix C.1):

1. join each response to its problem (by normalised problem text);
2. remove the chain of thought (``<think>…</think>``, SkyThought's ``<|begin_of_thought|>…`` format) and
   drop responses that are only a truncated thought;
3. label each remaining response correct/incorrect against the gold answer with ``verify_answer``;
4. balance every (subset, source model) to equal numbers of correct and incorrect responses (seeded);
5. emit judging rows ``{id, subset, source_model, question, response, label}`` plus statistics in the
   shape of the paper's Table 1, and the agreement of our labels with the source's own labels.

Labelling is the slow step, so labels are appended to a cache file as they are computed; a rerun after a
crash labels only what is missing. A check that could not finish (a timeout, a dead checker worker) is no
label: it is counted in the statistics, its response is left out of the rows, and it is never cached, so a
rerun checks it again.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .jsonl import append_jsonl, read_jsonl
from .sources import Problem, Response, question_key

LABEL_BATCH = 256  # labels are flushed to the cache after every batch


@dataclass
class Candidate:
    """A response matched to its problem, with the CoT removed and (once labelled) our label."""

    problem: Problem
    response: Response
    final: str
    label: bool | None = None
    why: dict | None = None  # the checker's explanation of the label (extracted answer, forms, rule)


@dataclass
class V2VResult:
    rows: list[dict]
    stats: dict
    agreement: dict
    disagreements: list[dict] = field(default_factory=list)


def match(problems: Sequence[Problem], responses: Sequence[Response]) -> tuple[list[tuple[Problem, Response]], int]:
    """(problem, response) pairs, and how many responses matched no problem."""
    index: dict[str, Problem] = {}
    for p in problems:
        index.setdefault(question_key(p.question), p)
    pairs, unmatched = [], 0
    for r in responses:
        p = index.get(question_key(r.question))
        if p is None:
            unmatched += 1
        else:
            pairs.append((p, r))
    return pairs, unmatched


def _label_key(final: str, gold: str) -> str:
    """Cache key of one label: the texts compared and the checker version that compared them."""
    from libra.verify import CHECKER_VERSION

    return hashlib.sha256(f"{CHECKER_VERSION}\x00{gold}\x00{final}".encode()).hexdigest()[:24]


def _outcome(result: Any) -> tuple[bool | None, dict | None]:
    """A checker's result as (label, explanation): a ``libra.verify.Verdict`` explains itself, and one whose
    check failed is no label (None); a stand-in checker may return plain bools."""
    if isinstance(result, bool):
        return result, None
    return (None if result.failure else result.correct), result.as_dict()


def label_all(cands: list[Candidate], verify_many: Callable, cache: Path | None,
              **verify_kw) -> tuple[int, Counter]:
    """Fill ``label`` and ``why`` on every candidate, reusing and extending the cache.

    Returns how many were checked now and the failed checks by kind; a failed check leaves ``label`` None
    and is not cached.
    """
    known: dict[str, tuple[bool, dict | None]] = {}
    if cache is not None and cache.exists():
        known = {rec.data["key"]: (bool(rec.data["label"]), rec.data.get("why")) for rec in read_jsonl(cache)}
    todo = [c for c in cands if _label_key(c.final, c.problem.gold) not in known]
    failures: Counter = Counter()
    for start in range(0, len(todo), LABEL_BATCH):
        batch = todo[start:start + LABEL_BATCH]
        results = verify_many([(c.final, c.problem.gold) for c in batch], explain=True, **verify_kw)
        fresh = {}
        for c, result in zip(batch, results):
            label, why = _outcome(result)
            if label is None:
                failures[result.failure] += 1
                c.why = why
            else:
                fresh[_label_key(c.final, c.problem.gold)] = (label, why)
        known.update(fresh)
        if cache is not None:
            append_jsonl(cache, ({"key": k, "label": label, "why": why} for k, (label, why) in fresh.items()))
    for c in cands:
        key = _label_key(c.final, c.problem.gold)
        if key in known:
            c.label, c.why = known[key]
    return len(todo), failures


def balance(cands: list[Candidate], seed: int) -> list[Candidate]:
    """Equal correct and incorrect per (subset, source model): the larger side is subsampled (seeded)."""
    groups: dict[tuple[str, str, bool], list[Candidate]] = defaultdict(list)
    for c in cands:
        groups[(c.problem.subset, c.response.source_model, c.label)].append(c)
    rng = random.Random(seed)
    kept = []
    for subset, model in sorted({(s, m) for s, m, _ in groups}):
        right, wrong = groups[(subset, model, True)], groups[(subset, model, False)]
        n = min(len(right), len(wrong))
        for side in (right, wrong):
            kept.extend(rng.sample(side, n))
    return kept


def agreement(cands: list[Candidate]) -> tuple[dict, list[dict]]:
    """How our labels compare with the source's own labels (where it has them), and the disagreements."""
    counts = Counter()
    listing = []
    for c in cands:
        src = c.response.source_label
        if src is None:
            continue
        counts[(src, c.label)] += 1
        if src != c.label:
            listing.append({"origin": c.response.origin, "source_model": c.response.source_model,
                            "subset": c.problem.subset, "problem_id": c.problem.problem_id, "gold": c.problem.gold,
                            "source_label": src, "our_label": c.label, "why": c.why,
                            "response_tail": c.final[-600:]})
    total = sum(counts.values())
    agree = counts[(True, True)] + counts[(False, False)]
    return {"compared": total, "agree": agree, "agreement": agree / total if total else None,
            "source_true_ours_false": counts[(True, False)], "source_false_ours_true": counts[(False, True)]}, listing


def table1(rows: list[dict]) -> dict:
    """Statistics shaped like the paper's Table 1: per subset, problems and samples by label and model."""
    out: dict[str, dict] = {}
    for subset in sorted({r["subset"] for r in rows}):
        sub = [r for r in rows if r["subset"] == subset]
        by_model: dict[str, dict] = defaultdict(lambda: {"correct": 0, "incorrect": 0})
        for r in sub:
            by_model[r["source_model"]]["correct" if r["label"] else "incorrect"] += 1
        out[subset] = {
            "problems": len({r["problem_id"] for r in sub}),
            "correct": sum(r["label"] for r in sub),
            "incorrect": sum(not r["label"] for r in sub),
            "models": dict(sorted(by_model.items())),
        }
    return out


def build(problems: Sequence[Problem], responses: Sequence[Response], *, strip_thinking: Callable,
          verify_many: Callable, seed: int = 0, level: int | None = None, do_balance: bool = True,
          cache: Path | None = None, **verify_kw) -> V2VResult:
    """The whole pipeline; ``strip_thinking`` and ``verify_many`` come from ``libra.verify``."""
    pairs, unmatched = match(problems, responses)
    off_level = sum(1 for p, _ in pairs if level is not None and p.level is not None and p.level != level)
    pairs = [(p, r) for p, r in pairs if level is None or p.level is None or p.level == level]
    cands, truncated = [], 0
    for p, r in pairs:
        final = strip_thinking(r.text)
        if final is None or not final.strip():
            truncated += 1
        else:
            cands.append(Candidate(p, r, final.strip()))
    computed, failures = label_all(cands, verify_many, cache, **verify_kw)
    cands = [c for c in cands if c.label is not None]
    agree, listing = agreement(cands)
    kept = balance(cands, seed) if do_balance else cands
    kept.sort(key=lambda c: (c.problem.subset, c.problem.problem_id, c.response.source_model, c.response.sample))
    rows = [{"id": f"{c.problem.subset}/{c.problem.problem_id}/{c.response.source_model}/{c.response.sample}",
             "subset": c.problem.subset, "source_model": c.response.source_model, "problem_id": c.problem.problem_id,
             "question": c.problem.question, "response": c.final, "label": c.label} for c in kept]
    labelled = Counter(c.label for c in cands)
    stats = {"responses": len(responses), "unmatched": unmatched, "other_level": off_level,
             "truncated_thought": truncated, "labelled": len(cands), "labels_computed_now": computed,
             "check_failed": sum(failures.values()), "check_failures": dict(sorted(failures.items())),
             "labelled_correct": labelled[True], "labelled_incorrect": labelled[False], "rows": len(rows),
             "seed": seed, "table1": table1(rows)}
    return V2VResult(rows, stats, agree, listing)
