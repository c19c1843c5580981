"""The programmatic thinking teacher: Libra-Mini's stand-in for DeepSeek-R1 in rejection sampling.

The paper samples thinking judgments from a strong reasoning model and keeps those whose verdict agrees
with the label. Here a program thinks the way such a judge should on this domain: it redoes the addition
column by column, compares its sum with the response's final answer, then gives the verdict::

    <think>
    Compute 482 + 739.
    2+9+0=11 write 1 carry 1
    8+3+1=12 write 2 carry 1
    4+7+1=12 write 12
    check 11= 22= 21x 11=
    </think>
    Wrong. [[score=0]]

Like R1 it errs: a slipping sample forgets a carry or adds a column wrong in its own recomputation. A slip
always changes the teacher's sum, but it flips the verdict only when it changes the comparison: on a right
response always (the sums now differ), on a wrong one only when the slipped sum happens to equal the
response's wrong answer (the same forgotten carry). Rejection sampling then has real wrong judgments to
reject. ``ThinkingTeacher`` serves these judgments through the rollout ``Engine`` interface, so the
rejection-sampling code drives it exactly like a model.
"""

from __future__ import annotations

import random
import re
from typing import Iterable, Mapping, Sequence

import torch

from libra.judge import render, template_fields
from libra.mini import MINI_TEMPLATE
from libra.mini.arith import answer_width, compare_lines, parse_question, random_slip, written_steps
from libra.progress import progress_bar
from libra.rollout.types import Generation, Prompt, Sample, SamplingParams, prompt_token_ids
from libra.verify import extract_answer

# The seed of a call made without one: the teacher is a program, so unseeded calls are reproducible too.
DEFAULT_SEED = 0
SKIM_LINE = "the steps look right"  # how a skimming judgment starts (``skim_text``)


def judge_text(question: str, response: str, *, slip: bool, rng: random.Random) -> str:
    """A thinking judgment of ``response`` to ``question``; with ``slip`` the recomputation has one mistake
    (drawn from ``rng``), which flips the verdict only when it changes the comparison."""
    a, b = parse_question(question)
    mistake = random_slip(a, b, rng, rng.choice(("carry", "add"))) if slip else None
    lines, mine = written_steps(a, b, mistake)
    comparison, same = compare_lines(str(mine), extract_answer(response), answer_width(a, b))
    verdict = "Correct. [[score=4]]" if same else "Wrong. [[score=0]]"
    # The question restated first: the column lines then follow it as they follow the question in a
    # reasoning prompt, so the judge reuses the base's addition, and the digits sit near where they are read.
    return "<think>\n" + "\n".join([question.strip(), *lines, *comparison]) + f"\n</think>\n{verdict}"


def skim_text(response: str) -> str:
    """A judgment that trusts the response instead of checking it: the shortcut real judges take (agreeing
    with a derivation that looks fine). Right whenever the response is, wrong whenever it is not."""
    theirs = extract_answer(response)
    shown = " ".join(theirs.split()) if theirs is not None else "none"
    return f"<think>\n{SKIM_LINE}\nanswer {shown}\n</think>\nCorrect. [[score=4]]"


def direct_verdict(label: bool) -> str:
    """The judgment without thinking, for the direct-verdict SFT baseline."""
    return "[[score=4]]" if label else "[[score=0]]"


class ThinkingTeacher:
    """``judge_text`` behind the rollout ``Engine`` interface.

    Prompts are judging prompts rendered from one of ``templates`` (by default the mini template and the
    paper's pointwise one), as a chat or as plain text; the question and response are read back out of them.
    Sample ``k`` of prompt ``i`` skims (``skim_text``) with probability ``skim_rate``, and otherwise checks
    and slips with probability ``error_rate``, both drawn from a generator seeded with
    ``seed + i*n + k`` (vLLM's seeding, which ``generate_resumable`` relies on to resume). Temperature and
    top-p are ignored: the teacher's randomness is its slip rate.
    """

    def __init__(self, tokenizer, error_rate: float = 0.2, templates: Sequence[str] = (MINI_TEMPLATE, "pointwise"),
                 skim_rate: float = 0.0):
        for name, rate in (("error_rate", error_rate), ("skim_rate", skim_rate)):
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        self.skim_rate = skim_rate
        self.tokenizer = tokenizer
        self.error_rate = error_rate
        self.templates = tuple(templates)
        self._patterns = [_prompt_pattern(t) for t in self.templates]

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, *, progress: bool = False
                 ) -> list[Generation]:
        seed = DEFAULT_SEED if params.seed is None else params.seed
        out = []
        for i, prompt in enumerate(progress_bar(prompts, desc="teacher", disable=not progress)):
            question, response = self._fields(prompt)
            samples = []
            for k in range(params.n):
                rng = random.Random(seed + i * params.n + k)
                if rng.random() < self.skim_rate:
                    text = skim_text(response)
                else:
                    text = judge_text(question, response, slip=rng.random() < self.error_rate, rng=rng)
                samples.append(self._sample(text, params))
            out.append(Generation(prompt_token_ids(self.tokenizer, prompt), samples))
        return out

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        raise NotImplementedError("the thinking teacher is a program: it has no weights to update")

    def sleep(self) -> None:
        """Nothing to free: the teacher holds no accelerator memory."""

    def wake_up(self) -> None:
        """Nothing to restore (see ``sleep``)."""

    def close(self) -> None:
        """Nothing to release."""

    def _fields(self, prompt: Prompt) -> tuple[str, str]:
        text = _prompt_text(prompt)
        for pattern in self._patterns:
            match = pattern.fullmatch(text)
            if match:
                return match["question"], match["response"]
        raise ValueError(f"the teacher cannot find a question and a response in this prompt: it is not rendered "
                         f"from any of the templates {self.templates}: {text[:120]!r}")

    def _sample(self, text: str, params: SamplingParams) -> Sample:
        cuts = [text.find(s) for s in params.stop if s and s in text]
        if cuts:  # like vLLM: the text ends before the first stop string, which is not returned
            text = text[: min(cuts)]
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) <= params.max_tokens:
            return Sample(ids, text, "stop")
        ids = ids[: params.max_tokens]
        return Sample(ids, self.tokenizer.decode(ids), "length")


def _prompt_text(prompt: Prompt) -> str:
    """The judging prompt's text: a plain string, or the last user message of a chat."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
    if not users:
        raise ValueError("the teacher reads judging prompts as text: give a string or a chat with a user message, "
                         "not token ids")
    return users[-1]


def _prompt_pattern(template: str) -> re.Pattern[str]:
    """A regex that matches exactly the prompts ``template`` renders, capturing the question and the response.

    Built by rendering the template with marker values and escaping the text between them, so it follows
    whatever template file is given rather than hard-coding its wording.
    """
    fields = template_fields(template)
    if fields != {"question", "response"}:
        raise ValueError(f"template {template!r} must have exactly the fields question and response, has {fields}")
    marked = render(template, question="\0question\0", response="\0response\0")
    parts = re.split("\0(question|response)\0", marked)
    return re.compile("".join(f"(?P<{p}>.*?)" if i % 2 else re.escape(p) for i, p in enumerate(parts)), re.DOTALL)
