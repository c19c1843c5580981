"""Verdict-token confidence: the verdict's span, the candidate judgments, P(correct) by hand, and the engine
scores against a full forward pass of every candidate judgment (the common prefix must cancel exactly)."""
import math

import pytest
import torch

from libra.eval.calibration import verdict_confidence_report
from libra.eval.generations import Request
from libra.eval.verdict_confidence import (
    VerdictScoreStore,
    attach_verdict_confidence,
    candidate_outcomes,
    candidate_texts,
    p_correct,
    score_judgments,
)
from libra.judge.verdicts import verdict_span
from libra.models.tiny import save_tiny
from libra.rollout import HFEngine, prompt_token_ids


def test_verdict_span_is_the_verdict_the_parser_reads():
    text = "<think>maybe [[score=0]]</think> so [[ score = 3 ]] done"
    span = verdict_span(text, "pointwise")
    assert text[span.label_start:span.label_end] == "score = 3" and text[span.label_end:span.end] == " ]]"
    assert verdict_span("<think>[[score=1]] never closed", "pointwise", strict=True) is None
    lenient = verdict_span("<think>[[score=1]] never closed", "pointwise")
    assert lenient is not None and lenient.label_start == len("<think>[[")
    text = "It is [[Wrong]]."
    span = verdict_span(text, "verification")
    assert text[span.label_start:span.label_end] == "Wrong" and text[span.label_end:span.end] == "]]"
    assert verdict_span("no verdict", "pointwise") is None
    with pytest.raises(ValueError, match="kind must be one of"):
        verdict_span("x", "scalar")


def test_candidates_rewrite_the_label_in_place_and_drop_what_follows():
    assert candidate_texts("Fine. [[score=4]] trailing", "pointwise") == [
        f"Fine. [[score={s}]]" for s in range(5)]
    assert candidate_texts("x [[ correct ]]", "verification") == ["x [[ Correct ]]", "x [[ Wrong ]]"]
    assert candidate_texts("nothing", "verification") is None
    assert candidate_texts("It is [[score=7]]", "pointwise") is None  # a verdict, but an invalid one
    assert candidate_texts("<think>[[score=4]]</think> so [[score=9]]", "pointwise") is None  # read: the 9
    assert candidate_outcomes("pointwise", 2) == [False, False, True, True, True]
    assert candidate_outcomes("pointwise", 4) == [False, False, False, False, True]
    assert candidate_outcomes("verification", 2) == [True, False]
    with pytest.raises(ValueError, match="verdict-token confidence needs"):
        candidate_texts("[[A>B]]", "pairwise")


def test_p_correct_by_hand():
    probs = [0.05, 0.05, 0.1, 0.2, 0.4]  # sums to 0.8: 0.2 of the mass is on no valid verdict
    p, mass = p_correct([math.log(q) for q in probs], [False, False, True, True, True])
    assert p == pytest.approx(0.7 / 0.8) and mass == pytest.approx(0.8)
    p, _ = p_correct([-1000.0, -1000.5], [True, False])  # no underflow far from 0
    assert p == pytest.approx(1 / (1 + math.exp(-0.5)))


class CountingHF(HFEngine):
    def __init__(self, model):
        super().__init__(model, batch_size=3)
        self.scored = 0

    def score(self, prompts, continuations):
        self.scored += len(prompts)
        return super().score(prompts, continuations)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return CountingHF(str(save_tiny(tmp_path_factory.mktemp("tiny"))))


def _full_logprob(engine, prompt, completion):
    """Sum of log-probs of every completion token, from the model's logits (no common-prefix shortcut)."""
    ids = prompt + list(engine.tokenizer(completion, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logits = engine.model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(logp[i - 1, ids[i]].item() for i in range(len(prompt), len(ids)))


def test_engine_scores_equal_full_forward_passes_and_are_stored(engine, tmp_path):
    judgments = ["<think>\nsum 046\n</think>\nCorrect. [[score=4]]", "Wrong answer [[score=0]]", "no verdict",
                 "It says 7. [[score=2]]"]
    items = [(f"k{i}", Request(f"r{i}", [{"role": "user", "content": f"Judge: is {i} + {i} = {2 * i}?"}]), text)
             for i, text in enumerate(judgments)]
    store = VerdictScoreStore(tmp_path / "scores.jsonl")
    scores = score_judgments(engine, items, "pointwise", strict=False, store=store, model_id="m", progress=False)
    assert sorted(scores) == ["k0", "k1", "k3"]  # the judgment without a verdict is not scored
    outcomes = candidate_outcomes("pointwise", 2)
    for key, request, text in items:
        if key not in scores:
            continue
        prompt = prompt_token_ids(engine.tokenizer, request.prompt)
        full = [_full_logprob(engine, prompt, c) for c in candidate_texts(text, "pointwise")]
        expected = sum(math.exp(f) for f, ok in zip(full, outcomes) if ok) / sum(math.exp(f) for f in full)
        assert p_correct(scores[key], outcomes)[0] == pytest.approx(expected, rel=1e-4)
        assert len(set(scores[key])) == 5  # a random model gives the five labels different probabilities
    assert engine.scored == 15
    again = score_judgments(engine, items, "pointwise", strict=False, store=VerdictScoreStore(store.path),
                            model_id="m", progress=False)
    assert again.keys() == scores.keys() and engine.scored == 15  # all from the store
    assert all(again[k] == pytest.approx(scores[k]) for k in scores)
    score_judgments(engine, items[:1], "pointwise", strict=False, store=store, model_id="other", progress=False)
    assert engine.scored == 20  # another model's weights: scored anew


def test_an_invalid_verdict_has_no_confidence_and_is_counted(engine, tmp_path):
    """[[score=7]] parses invalid: the judge gave no usable verdict, so it gets no P(correct) (rewriting its
    label would score verdicts it did not give) and counts among the judgments without a valid verdict."""
    judgments = ["Fine. [[score=3]]", "It is [[score=7]]", "<think>[[score=4]]</think> so [[score=9]]", "none"]
    requests = [Request(f"r{i}", [{"role": "user", "content": f"Judge {i}"}]) for i in range(len(judgments))]
    records = [{"key": f"k{i}", "samples": [{"text": text}]} for i, text in enumerate(judgments)]
    per_row = [[{"label": i % 2 == 0}] for i in range(len(judgments))]
    attach_verdict_confidence(per_row, requests, records, engine, kind="pointwise", threshold=2, strict=False,
                              store=VerdictScoreStore(tmp_path / "scores.jsonl"), model_id="m", progress=False)
    assert [row[0]["p_correct"] is None for row in per_row] == [False, True, True, True]
    assert all(row[0]["verdict_mass"] is None for row in per_row[1:])
    report = verdict_confidence_report(per_row)
    assert (report["judgments_scored"], report["judgments_without_verdict"]) == (1, 3)
    assert report["rows_without_confidence"] == 3
