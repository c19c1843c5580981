"""Verifiable-reasoning inputs: problem sets with gold answers, and sampled responses to them.

Problem files (.jsonl/.json/.parquet) need a question (``problem`` or ``question``) and a gold ``answer``;
``unique_id``/``id``/``idx`` name the problem (else its line) and ``level`` is kept for filtering.

Response files come in the shapes real evaluation harnesses write:

* the Qwen2.5-Math harness (.jsonl): ``question``, ``code`` (list of responses), ``score`` (list of bools);
* SkyThought's tools (.json, an object keyed by problem): ``problem``, ``responses`` = {temperature:
  {``content``, ``correctness``}};
* plain rows: ``question`` and ``response`` (str), optional ``label``.

Each becomes one ``Response`` per sampled text, with the source's own correctness label when it has one
(kept only to measure agreement; V2V labels are always recomputed). The source model is the file name
unless given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .jsonl import Record, SkipCounter, read_records, reject

_QUESTION_FIELDS = ("problem", "question")


@dataclass(frozen=True)
class Problem:
    subset: str
    problem_id: str
    question: str
    gold: str
    level: int | None


@dataclass(frozen=True)
class Response:
    source_model: str
    question: str
    text: str
    sample: int
    source_label: bool | None
    origin: str  # "path:line", for error messages and the disagreement listing


def question_key(text: str) -> str:
    """Join key for problem text: whitespace-collapsed, so re-wrapped copies of a problem still match."""
    return " ".join(text.split())


def _question(rec: Record) -> str:
    for name in _QUESTION_FIELDS:
        if name in rec.data:
            return rec.get(name, str)
    raise rec.error("problem", f"missing field (one of {', '.join(_QUESTION_FIELDS)})")


def _level(rec: Record) -> int | None:
    raw = rec.get("level", (int, str), required=False)
    if raw is None or isinstance(raw, int):
        return raw
    match = re.search(r"\d+", raw)
    if not match:
        raise rec.error("level", f"not a level: {raw!r}")
    return int(match.group())


def load_problems(path: str | Path, subset: str, *, skip_bad: SkipCounter | None = None) -> list[Problem]:
    problems = []
    for rec in read_records(path, skip_bad=skip_bad):
        try:
            gold = rec.get("answer", (str, int, float))
            pid = next((str(rec.data[k]) for k in ("unique_id", "id", "idx") if rec.data.get(k) is not None),
                       str(rec.line))
            problems.append(Problem(subset, pid, _question(rec), str(gold), _level(rec)))
        except ValueError as err:
            reject(err, skip_bad)
    return problems


def _response_texts(rec: Record) -> list[tuple[str, bool | None]]:
    """(text, source label) pairs of one record, in any of the supported shapes."""
    if "code" in rec.data:  # Qwen2.5-Math harness
        texts = rec.get("code", list)
        scores = rec.get("score", list, required=False, default=[None] * len(texts))
        if len(scores) != len(texts):
            raise rec.error("score", f"{len(scores)} scores for {len(texts)} responses in 'code'")
        return [(_str_item(rec, "code", t), _label_item(rec, "score", s)) for t, s in zip(texts, scores)]
    if "responses" in rec.data:  # SkyThought tools
        out = []
        for temp, item in rec.get("responses", dict).items():
            if not isinstance(item, dict) or not isinstance(item.get("content"), str):
                raise rec.error(f"responses.{temp}.content", "missing or not a string")
            out.append((item["content"], _label_item(rec, f"responses.{temp}.correctness", item.get("correctness"))))
        return out
    label = rec.get("label", (bool, int), required=False)
    return [(rec.get("response", str), None if label is None else bool(label))]


def _str_item(rec: Record, name: str, value) -> str:
    if not isinstance(value, str):
        raise rec.error(name, f"expected a list of strings, found {type(value).__name__}")
    return value


def _label_item(rec: Record, name: str, value) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise rec.error(name, f"expected true/false, got {value!r}")


def load_responses(path: str | Path, *, source_model: str | None = None,
                   skip_bad: SkipCounter | None = None) -> list[Response]:
    model = source_model or Path(path).stem
    out = []
    for rec in read_records(path, skip_bad=skip_bad):
        try:
            question = _question(rec)
            for sample, (text, label) in enumerate(_response_texts(rec)):
                out.append(Response(model, question, text, sample, label, f"{rec.path}:{rec.line}"))
        except ValueError as err:
            reject(err, skip_bad)
    return out
