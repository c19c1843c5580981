"""``HFEngine``, the transformers reference engine: the rollout interface's contract, without vLLM."""

import threading

import pytest
import torch

from libra.models.tiny import save_tiny
from libra.rollout import HFEngine, SamplingParams, logprob_mismatch, sequence_logprobs

PROMPTS = ["The answer is", [{"role": "user", "content": "What is 2+2?"}], [5, 6, 7, 8]]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    engine = HFEngine(str(save_tiny(tmp_path_factory.mktemp("tiny"))), batch_size=2)
    yield engine
    engine.close()


def test_shapes_and_n(engine):
    gens = engine.generate(PROMPTS, SamplingParams(n=3, max_tokens=5, seed=0))
    assert len(gens) == 3
    assert gens[2].prompt_token_ids == [5, 6, 7, 8]
    assert gens[1].prompt_token_ids[-3:] == engine.tokenizer("<|im_start|>assistant\n")["input_ids"][-3:]
    for gen in gens:
        assert len(gen.samples) == 3
        for sample in gen.samples:
            assert 1 <= len(sample.token_ids) <= 5
            assert sample.finish_reason in ("stop", "length")
            assert sample.logprobs is None


def test_seed_reproducibility(engine):
    params = SamplingParams(n=2, max_tokens=8, seed=3)
    ids = [[s.token_ids for s in g.samples] for g in engine.generate(PROMPTS, params)]
    assert ids == [[s.token_ids for s in g.samples] for g in engine.generate(PROMPTS, params)]
    other = SamplingParams(n=2, max_tokens=8, seed=4)
    assert ids != [[s.token_ids for s in g.samples] for g in engine.generate(PROMPTS, other)]


def test_max_tokens_gives_length(engine):
    sample = engine.generate(["Hello"], SamplingParams(temperature=0, max_tokens=4))[0].samples[0]
    if engine.eos_ids.isdisjoint(sample.token_ids):
        assert (len(sample.token_ids), sample.finish_reason) == (4, "length")
    else:
        assert sample.finish_reason == "stop"


def test_stop_string_gives_stop(engine):
    free = engine.generate(["Hello"], SamplingParams(temperature=0, max_tokens=12))[0].samples[0]
    stop = engine.tokenizer.decode(free.token_ids[2:4])
    cut = engine.generate(["Hello"], SamplingParams(temperature=0, max_tokens=12, stop=(stop,)))[0].samples[0]
    assert cut.finish_reason == "stop"
    assert len(cut.token_ids) <= 4
    assert stop in engine.tokenizer.decode(cut.token_ids)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_trainer(engine, temperature):
    gens = engine.generate(PROMPTS, SamplingParams(n=2, temperature=temperature, max_tokens=10, seed=1,
                                                   logprobs=True))
    prompts = [g.prompt_token_ids for g in gens for _ in g.samples]
    samples = [s for g in gens for s in g.samples]
    trainer = sequence_logprobs(engine.model, prompts, [s.token_ids for s in samples], temperature=temperature)
    stats = logprob_mismatch([s.logprobs for s in samples], trainer)
    assert stats["tokens"] == sum(len(s.token_ids) for s in samples)
    assert stats["max_abs"] < 1e-4


def test_update_weights_changes_outputs(engine):
    params = SamplingParams(temperature=0, max_tokens=12)
    before = [g.samples[0].token_ids for g in engine.generate(PROMPTS, params)]
    original = {k: v.clone() for k, v in engine.model.state_dict().items()}
    torch.manual_seed(0)
    engine.update_weights((k, v + 0.1 * torch.randn_like(v)) for k, v in original.items())
    assert [g.samples[0].token_ids for g in engine.generate(PROMPTS, params)] != before
    engine.update_weights(original.items())
    assert [g.samples[0].token_ids for g in engine.generate(PROMPTS, params)] == before


def test_update_weights_unknown_name(engine):
    with pytest.raises(KeyError, match="no_such.weight"):
        engine.update_weights([("no_such.weight", torch.zeros(1))])


def test_generate_stream_yields_generate_results_a_micro_batch_at_a_time(engine):
    """In order, the same samples, whatever the process draws from torch's generator between micro-batches
    (the consumer) or while they run (another engine's thread: a judge's)."""
    params = SamplingParams(n=2, max_tokens=6, seed=3, logprobs=True)
    expected = engine.generate(PROMPTS, params)
    stop = threading.Event()

    def other_engine():
        while not stop.is_set():
            engine.generate(PROMPTS[:1], SamplingParams(max_tokens=3, seed=99))

    thread = threading.Thread(target=other_engine)
    thread.start()
    try:
        streamed = []
        for i, gen in engine.generate_stream(PROMPTS, params):
            streamed.append((i, gen))
            torch.rand(8)
    finally:
        stop.set()
        thread.join()
    assert [i for i, _ in streamed] == [0, 1, 2]
    assert [gen for _, gen in streamed] == expected
