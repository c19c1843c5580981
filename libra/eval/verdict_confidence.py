"""Confidence from the verdict token's distribution: how likely the judge was to write each verdict at the
place where it wrote one.

For a judgment whose verdict parses valid, the text before the verdict's label (``...[[``) is kept and every
label the judge could have written there is put in its place: ``score=0`` ... ``score=4`` (pointwise),
``Correct`` / ``Wrong`` (verification), each followed by the rest of the token as written (``]]``). The
engine scores each candidate under teacher forcing (``Engine.score``: the judgment prompt, the kept text,
then the candidate; temperature 1, the model's own distribution), and

    P(correct) = sum over candidates judged correct of exp(logp) / sum over all candidates of exp(logp),

with "judged correct" the evaluation's own rule (score >= threshold). Each candidate is tokenised whole
(kept text + label), so tokenisers that merge ``=4`` into one token are scored as they write; only the
tokens after the candidates' common token prefix are scored, since the common part has the same
probability under every candidate and cancels. ``verdict_mass`` is the sum of exp(logp) over the
candidates: the probability, given the common part, that the judge writes a valid verdict at all (near 1
for a judge that follows the format).

Unlike the share of k samples judging "correct", this needs one judgment per row, so greedy judges get a
confidence too. A judgment without a valid verdict (none, or one that parses invalid such as
``[[score=7]]``) has none (None); a row's confidence is the mean over its judgments that have one. Scores
are kept in ``verdict_scores.jsonl`` keyed on the judgment (its generation key, sample index and text) and
the scoring rule, so a rerun scores only what is new.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Sequence

from libra.eval.generations import KeyedStore, Request
from libra.judge import KINDS, judge_kind
from libra.judge.verdicts import verdict_span
from libra.progress import progress_bar
from libra.rollout.types import Engine, prompt_token_ids

CANDIDATES = {name: kind.candidates for name, kind in KINDS.items() if kind.candidates}  # kinds that have them
BATCH = 64  # candidate sequences per engine call


class VerdictScoreStore(KeyedStore):
    """Records ``{key, logprobs}``: one summed log-prob per candidate label, in ``CANDIDATES`` order."""

    required = {"logprobs": list}


def candidate_texts(text: str, kind: str, *, strict: bool = False) -> list[str] | None:
    """The judgment cut after its verdict, once per candidate label written in the verdict's place; None
    when the judgment has no valid verdict to rewrite. An invalid one (``[[score=7]]``) is no verdict: the
    evaluation counts it invalid, so a confidence made by scoring labels in its place would be one the
    judge never gave."""
    if kind not in CANDIDATES:
        raise ValueError(f"verdict-token confidence needs a kind in {sorted(CANDIDATES)}, got {kind!r}")
    span = verdict_span(text, kind, strict=strict)
    if span is None or not judge_kind(kind).parse(text, strict=strict).valid:
        return None
    head, tail = text[:span.label_start], text[span.label_end:span.end]
    return [head + label + tail for label in CANDIDATES[kind]]


def candidate_outcomes(kind: str, threshold: int) -> list[bool]:
    """Whether each candidate label of ``kind`` is a 'correct' prediction under ``threshold``."""
    judge = judge_kind(kind)
    return [judge.outcome(judge.parse(f"[[{label}]]").value, threshold) for label in CANDIDATES[kind]]


def p_correct(logprobs: Sequence[float], outcomes: Sequence[bool]) -> tuple[float, float]:
    """(P(correct), verdict mass) from the candidates' summed log-probs (see the module docstring)."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return sum(w for w, ok in zip(weights, outcomes) if ok) / total, total * math.exp(top)


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(map(len, seqs))
    for i in range(n):
        if len({s[i] for s in seqs}) > 1:
            return i
    return n


def score_judgments(engine: Engine, items: Sequence[tuple[str, Request, str]], kind: str, *, strict: bool,
                    store: VerdictScoreStore, model_id: str, progress: bool = True) -> dict[str, list[float]]:
    """Candidate log-probs for each ``(judgment key, request, judgment text)`` with a valid verdict: read from
    ``store`` or scored now with ``engine`` (and appended). Returns judgment key -> log-probs."""
    todo, out = [], {}
    for key, request, text in items:
        candidates = candidate_texts(text, kind, strict=strict)
        if candidates is None:
            continue
        store_key = _store_key(key, candidates, model_id)
        if store_key in store:
            out[key] = store.get(store_key)["logprobs"]
        else:
            todo.append((key, store_key, request, candidates))
    bar = progress_bar(total=len(todo), desc="verdict scores", unit="judgment", disable=not progress or not todo)
    per_call = max(1, BATCH // len(CANDIDATES[kind]))
    prompt_ids: dict[str, list[int]] = {}  # a request's n judgments share its prompt: tokenise it once
    for start in range(0, len(todo), per_call):
        chunk = todo[start:start + per_call]
        prompts, continuations, owners = [], [], []
        for index, (*_keys, request, candidates) in enumerate(chunk):
            if request.sample_id not in prompt_ids:
                prompt_ids[request.sample_id] = prompt_token_ids(engine.tokenizer, request.prompt)
            prompt = prompt_ids[request.sample_id]
            tokens = [list(engine.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in candidates]
            cut = _common_prefix(tokens)
            prompts += [prompt + t[:cut] for t in tokens]
            continuations += [t[cut:] for t in tokens]
            owners += [index] * len(tokens)
        scored = engine.score(prompts, continuations)
        sums: list[list[float]] = [[] for _ in chunk]
        for owner, lps in zip(owners, scored):
            sums[owner].append(float(sum(lps)))
        store.append([{"key": store_key, "id": key, "logprobs": lps}
                      for (key, store_key, *_), lps in zip(chunk, sums)])
        out.update({key: lps for (key, *_), lps in zip(chunk, sums)})
        bar.update(len(chunk))
    bar.close()
    return out


def _store_key(judgment_key: str, candidates: Sequence[str], model_id: str) -> str:
    blob = json.dumps([judgment_key, list(candidates), model_id], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def store_path(out: str | Path) -> Path:
    return Path(out) / "verdict_scores.jsonl"


def attach_verdict_confidence(per_row: Sequence[Sequence[dict]], requests: Sequence[Request],
                              records: Sequence[dict], engine: Engine, *, kind: str, threshold: int, strict: bool,
                              store: VerdictScoreStore, model_id: str, progress: bool = True) -> None:
    """Add ``p_correct`` and ``verdict_mass`` (None without a valid verdict) to every prediction of ``per_row``
    (``score_records``' output for ``records``, generated for ``requests``), scoring what ``store`` lacks."""
    items = [(f"{record['key']}#{i}", request, sample["text"])
             for request, record in zip(requests, records, strict=True) if "key" in record
             for i, sample in enumerate(record["samples"])]
    scores = score_judgments(engine, items, kind, strict=strict, store=store, model_id=model_id, progress=progress)
    outcomes = candidate_outcomes(kind, threshold)
    for row, record in zip(per_row, records):
        for i, pred in enumerate(row):
            lps = scores.get(f"{record.get('key')}#{i}")
            pred["p_correct"], pred["verdict_mass"] = p_correct(lps, outcomes) if lps else (None, None)
