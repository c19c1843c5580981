"""Verifiable RL prompts and their rewards (paper section 4.3): judging rows scored against their
correctness label, and reasoning problems scored against their gold answer, both with Eq. 3's
``is_correct - length penalty``.

Rows (JSONL): a judging row has ``question``, ``response`` and a ``label`` (bool; for pairwise:
``response_a``, ``response_b`` and ``label`` "A"/"B"/"tie"; for verification also the gold ``reference``
answer, which the verification template shows the judge); a reasoning row has ``question`` (or
``problem``) and ``answer``. The judge kinds (template, verdict, labels) come from ``libra.judge.kinds``.
``task`` in a row overrides the file-wide ``data.task``, so one file can mix judging and non-judging prompts
as the paper's RL set does.
"""

from __future__ import annotations

from dataclasses import dataclass

from libra.data.jsonl import DataError, Record, SkipCounter, read_jsonl, reject
from libra.judge import KINDS, REASONING_PROMPT, judge_kind, render  # the reasoning prompt is pass@k's too
from libra.judge.kinds import FIELD_TYPES
from libra.judge.verdicts import TRAINING_STRICT
from libra.rewards import judging_reward, length_penalty, reasoning_reward

TASKS = (*KINDS, "reasoning")


@dataclass
class RLItem:
    id: str
    task: str
    prompt: list[dict]  # chat messages
    label: bool | str  # judging: the gold verdict; reasoning: the gold answer
    question: str = ""  # reasoning: the problem as given (what a judge reward shows its judge)


@dataclass(frozen=True)
class Scored:
    reward: float
    correct: bool


def _item(rec: Record, default_task: str, template: str) -> RLItem:
    task = rec.get("task", str, required=False, default=default_task)
    if task not in TASKS:
        raise DataError(rec.path, rec.line, "task", f"unknown task {task!r}; one of {', '.join(TASKS)}")
    question = rec.data.get("question", rec.data.get("problem"))
    if not isinstance(question, str):
        raise DataError(rec.path, rec.line, "question", "missing (or 'problem'), or not a string")
    rid = str(rec.data.get("id", rec.line))
    if task == "reasoning":
        answer = rec.get("answer", (str, int, float))
        prompt = REASONING_PROMPT.replace("{question}", question)
        return RLItem(rid, task, [{"role": "user", "content": prompt}], str(answer), question)
    kind = judge_kind(task)
    name = kind.template if template == "pointwise" else template  # the default template follows the kind
    label = rec.get("label", type(kind.labels[0]))
    if label not in kind.labels:
        raise DataError(rec.path, rec.line, "label", f"a {task} label is one of {kind.labels}, got {label!r}")
    fields = {name: str(rec.get(name, FIELD_TYPES.get(name, str))) for name in kind.row_fields}
    text = render(name, question=question, **fields)
    return RLItem(rid, task, [{"role": "user", "content": text}], label)


def load_rl_items(path: str, task: str, template: str, skip_bad: SkipCounter | None = None) -> list[RLItem]:
    """``template`` renders judging prompts: a builtin name ("pointwise", ...) or a template file."""
    items = []
    for rec in read_jsonl(path, skip_bad=skip_bad):
        try:
            items.append(_item(rec, task, template))
        except (DataError, ValueError) as err:
            reject(err if isinstance(err, DataError) else DataError(rec.path, rec.line, None, str(err)), skip_bad)
    return items


def score(item: RLItem, text: str, length: int, *, l_exp: int, l_max: int, threshold: int = 2,
          strict: bool = TRAINING_STRICT) -> Scored:
    """Eq. 3 for one rollout of ``item``; ``correct`` is the is_correct term alone (for accuracy logs).
    ``strict``: a judge's verdict counts only after its ``</think>`` (``libra.judge.verdicts``)."""
    if item.task == "reasoning":
        reward = reasoning_reward(text, item.label, length=length, l_exp=l_exp, l_max=l_max)
    else:
        reward = judging_reward(text, item.label, length=length, kind=item.task, threshold=threshold,
                                l_exp=l_exp, l_max=l_max, strict=strict)
    return Scored(reward, reward + length_penalty(length, l_exp, l_max) > 0.5)
