"""Trainer-side log-probs (``sequence_logprobs``) and the rollout/trainer gap (``logprob_mismatch``), no vLLM."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from libra.models.tiny import save_tiny
from libra.rollout.logprob_check import logprob_mismatch, sequence_logprobs


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return AutoModelForCausalLM.from_pretrained(save_tiny(tmp_path_factory.mktemp("tiny")), dtype=torch.float32)


def reference_logprobs(model, prompt, response, temperature):
    """One unpadded sequence through the full model: log_softmax(logits / T) gathered at the next token."""
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids).logits[0].float() / temperature
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[0, 1:, None])[:, 0]
    return logp[len(prompt) - 1:]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@torch.no_grad()
def test_sequence_logprobs_match_full_logits(model, temperature):
    prompts = [[5, 9, 100, 3], [7], [200, 201, 202, 203, 204, 205, 206]]
    responses = [[11, 12, 13], [40, 41, 42, 43, 44, 45, 46, 47, 48], [300]]
    got = sequence_logprobs(model, prompts, responses, temperature=temperature)
    assert [g.shape[0] for g in got] == [3, 9, 1]
    for g, p, r in zip(got, prompts, responses):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, reference_logprobs(model, p, r, temperature), atol=1e-5, rtol=1e-5)


def test_sequence_logprobs_depend_on_temperature(model):
    a, = sequence_logprobs(model, [[1, 2, 3]], [[4, 5]], temperature=1.0)
    b, = sequence_logprobs(model, [[1, 2, 3]], [[4, 5]], temperature=0.5)
    assert (a - b).abs().max() > 1e-3


def test_sequence_logprobs_rejects_bad_input(model):
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        sequence_logprobs(model, [[1], [2]], [[3]])
    with pytest.raises(ValueError, match="at least one token"):
        sequence_logprobs(model, [[]], [[3]])
    with pytest.raises(ValueError, match="temperature"):
        sequence_logprobs(model, [[1]], [[3]], temperature=0)


def test_logprob_mismatch_numbers():
    rollout = [[-1.0, -2.0], torch.tensor([-0.5])]
    trainer = [torch.tensor([-1.5, -2.0]), [-0.2]]
    stats = logprob_mismatch(rollout, trainer)
    assert stats["tokens"] == 3
    assert math.isclose(stats["mean_abs"], (0.5 + 0.0 + 0.3) / 3)
    assert math.isclose(stats["max_abs"], 0.5)
    assert math.isclose(stats["mean_signed"], (0.5 + 0.0 - 0.3) / 3)


def test_logprob_mismatch_edge_cases():
    assert logprob_mismatch([], []) == {"mean_abs": 0.0, "max_abs": 0.0, "mean_signed": 0.0, "tokens": 0}
    with pytest.raises(ValueError, match="sequence 0: 2 rollout log-probs but 1 trainer"):
        logprob_mismatch([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ValueError, match="1 rollout sequences but 2 trainer"):
        logprob_mismatch([[1.0]], [[1.0], [2.0]])
