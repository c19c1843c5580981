"""``VLLMEngine`` on a real vLLM engine (CPU here): generation against transformers, seeds, finish reasons,
log-probs against the trainer's, and live weight sync.

One engine serves the whole module (a start costs 20-50 s on CPU). Tests that change its weights put the
original ones back. Under pytest-xdist, ``--dist loadgroup`` keeps the module on one worker (the
``xdist_group`` mark); plain ``-n 2`` also works but may start a second engine on the other worker.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM

from libra.models.tiny import save_tiny
from libra.rollout import HFEngine, SamplingParams, logprob_mismatch, sequence_logprobs

pytestmark = [pytest.mark.vllm, pytest.mark.xdist_group("vllm-engine")]

PROMPTS = ["The answer is", "Problem: compute the sum.", [{"role": "user", "content": "What is 2+2?"}],
           [{"role": "system", "content": "Judge."}, {"role": "user", "content": "Is 4 correct?"}],
           [5, 6, 7, 8], "Score = ", "Hello world! What is the capital of France?", [100, 200, 300]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def engine(model_dir):
    from libra.rollout import VLLMEngine

    engine = VLLMEngine(str(model_dir), max_model_len=512)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def hf(model_dir):
    return HFEngine(str(model_dir), batch_size=8)


def token_ids(gens):
    return [[s.token_ids for s in g.samples] for g in gens]


def trainer_logprobs(model, gens, temperature):
    """Trainer-side log-probs of every sample, flattened in (prompt, sample) order, plus the rollout's."""
    pairs = [(g.prompt_token_ids, s) for g in gens for s in g.samples]
    trainer = sequence_logprobs(model, [p for p, _ in pairs], [s.token_ids for _, s in pairs], temperature=temperature)
    return [s.logprobs for _, s in pairs], trainer


def test_greedy_matches_transformers(engine, hf):
    params = SamplingParams(temperature=0, max_tokens=24)
    ours = engine.generate(PROMPTS, params)
    assert token_ids(ours) == token_ids(hf.generate(PROMPTS, params))
    assert [g.prompt_token_ids for g in ours] == [g.prompt_token_ids for g in hf.generate(PROMPTS, params)]


def test_prompt_forms(engine, hf):
    chat = [{"role": "user", "content": "What is 2+2?"}]
    rendered = hf.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    ids = hf.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    params = SamplingParams(temperature=0, max_tokens=6)
    as_chat, as_text, as_ids = engine.generate([chat, rendered, ids], params)
    assert as_chat.prompt_token_ids == as_text.prompt_token_ids == as_ids.prompt_token_ids == ids
    assert as_chat.samples[0].token_ids == as_text.samples[0].token_ids == as_ids.samples[0].token_ids
    assert as_chat.samples[0].text == hf.tokenizer.decode(as_chat.samples[0].token_ids, skip_special_tokens=True)


def test_n_samples(engine):
    gens = engine.generate(PROMPTS[:3], SamplingParams(n=4, max_tokens=8, seed=0))
    assert [len(g.samples) for g in gens] == [4, 4, 4]
    for g in gens:  # a random tiny model at temperature 1: four identical 8-token samples would mean a bug
        assert len({tuple(s.token_ids) for s in g.samples}) > 1


def test_seeds(engine):
    params = SamplingParams(n=2, max_tokens=10, seed=7)
    first = token_ids(engine.generate(PROMPTS, params))
    assert token_ids(engine.generate(PROMPTS, params)) == first
    assert token_ids(engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=10, seed=8))) != first
    # Per-request generators: prompt i's samples do not depend on what else is in the call.
    assert token_ids(engine.generate(PROMPTS + ["extra prompt"], params))[:len(PROMPTS)] == first
    # Prompt i is seeded with seed + i*n: the same prompt twice in one call gets different samples.
    once = SamplingParams(max_tokens=10, seed=7)
    twice = token_ids(engine.generate([PROMPTS[0], PROMPTS[0]], once))
    assert twice[0] != twice[1]
    assert token_ids(engine.generate([PROMPTS[0]], SamplingParams(max_tokens=10, seed=8)))[0] == twice[1]


def test_generate_stream_yields_what_generate_returns(engine):
    """The same requests stepped by hand: every prompt once, with generate's samples (seeds, log-probs,
    finish reasons), as each finishes; a stream closed early leaves no request behind."""
    params = SamplingParams(n=2, max_tokens=12, seed=7, logprobs=True)
    expected = engine.generate(PROMPTS, params)
    streamed = list(engine.generate_stream(PROMPTS, params))
    assert sorted(i for i, _ in streamed) == list(range(len(PROMPTS)))
    for i, gen in streamed:
        assert_same_generation(gen, expected[i])
    # A prompt whose greedy text starts with a character no other prompt's text has: with that character
    # as the stop string it ends after one token, and comes back while the others still generate.
    greedy = SamplingParams(temperature=0, max_tokens=24)
    texts = [g.samples[0].text for g in engine.generate(PROMPTS, greedy)]
    first = next(i for i, t in enumerate(texts) if t and not any(t[0] in o for j, o in enumerate(texts) if j != i))
    stream = engine.generate_stream(PROMPTS, SamplingParams(temperature=0, max_tokens=24, stop=(texts[first][0],)))
    assert next(stream)[0] == first and engine.llm.llm_engine.has_unfinished_requests()
    stream.close()  # aborts the rest
    assert not engine.llm.llm_engine.has_unfinished_requests()
    for gen, before in zip(engine.generate(PROMPTS, params), expected):
        assert_same_generation(gen, before)


def assert_same_generation(gen, expected):
    """Equal but for log-prob jitter: vLLM itself is not bitwise repeatable from call to call (a prompt's
    prefill shares its first step with whichever requests reached the engine by then), so two ``generate``
    calls can differ by ~5e-7 nats; the tokens, texts and finish reasons are exact."""
    assert gen.prompt_token_ids == expected.prompt_token_ids
    assert [(s.token_ids, s.text, s.finish_reason) for s in gen.samples] == \
        [(s.token_ids, s.text, s.finish_reason) for s in expected.samples]
    for s, e in zip(gen.samples, expected.samples):
        assert s.logprobs == pytest.approx(e.logprobs, abs=1e-5)


def test_max_tokens_gives_length(engine):
    gens = engine.generate(PROMPTS, SamplingParams(max_tokens=3, seed=0))
    for s in (s for g in gens for s in g.samples):
        if engine.tokenizer.eos_token_id not in s.token_ids:
            assert (len(s.token_ids), s.finish_reason) == (3, "length")
    assert any(s.finish_reason == "length" for g in gens for s in g.samples)


def test_stop_string(engine):
    params = SamplingParams(max_tokens=16, seed=5)
    free = engine.generate(PROMPTS[:1], params)[0].samples[0]
    assert len(free.text) >= 8, free
    stop = free.text[4:7]  # text, not decoded token slices: vLLM matches stop strings on the detokenised text
    cut = engine.generate(PROMPTS[:1], SamplingParams(max_tokens=16, seed=5, stop=(stop,)))[0].samples[0]
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[:free.text.index(stop)]  # vLLM drops the stop string from the text
    assert len(cut.token_ids) < len(free.token_ids)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_trainer(engine, hf, temperature):
    gens = engine.generate(PROMPTS, SamplingParams(n=2, temperature=temperature, max_tokens=16, seed=1,
                                                   logprobs=True))
    rollout, trainer = trainer_logprobs(hf.model, gens, temperature)
    stats = logprob_mismatch(rollout, trainer)
    assert stats["tokens"] > 100
    assert stats["mean_abs"] < 1e-5 and stats["max_abs"] < 1e-4, stats


def test_sleep_and_wake_up(engine):
    params = SamplingParams(temperature=0, max_tokens=6)
    before = token_ids(engine.generate(PROMPTS[:2], params))
    engine.sleep()
    if engine.sleep_mode:  # CUDA: asleep means no generation until wake_up
        with pytest.raises(RuntimeError, match="asleep"):
            engine.generate(PROMPTS[:2], params)
    engine.wake_up()
    assert token_ids(engine.generate(PROMPTS[:2], params)) == before


def test_weight_sync_matches_updated_trainer(engine, model_dir):
    """THE check the trainer depends on: after update_weights, rollout log-probs equal the trainer's."""
    greedy = SamplingParams(temperature=0, max_tokens=16)
    sampled = SamplingParams(n=2, temperature=0.7, max_tokens=16, seed=3, logprobs=True)
    original_greedy = token_ids(engine.generate(PROMPTS, greedy))
    trainer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    original = {k: v.clone() for k, v in trainer.state_dict().items()}
    torch.manual_seed(0)
    with torch.no_grad():
        for p in trainer.parameters():
            p.add_(0.05 * torch.randn_like(p))

    stale = logprob_mismatch(*trainer_logprobs(trainer, engine.generate(PROMPTS, sampled), 0.7))
    assert stale["mean_abs"] > 0.05, stale  # the engine still has the old weights

    engine.update_weights(trainer.state_dict().items(), bucket_mb=0.1)  # many small buckets
    synced = logprob_mismatch(*trainer_logprobs(trainer, engine.generate(PROMPTS, sampled), 0.7))
    assert synced["mean_abs"] < 1e-3 and synced["max_abs"] < 1e-2, synced
    assert token_ids(engine.generate(PROMPTS, greedy)) != original_greedy

    # Back to the original weights, without the tied lm_head alias this time: the fresh engine's outputs return.
    engine.update_weights((k, v) for k, v in original.items() if k != "lm_head.weight")
    assert token_ids(engine.generate(PROMPTS, greedy)) == original_greedy


def test_partial_update_is_refused_then_repaired(engine, model_dir):
    """On CPU every linear weight must be sent (the backend keeps only packed copies): a partial update
    raises, and a full one repairs the engine."""
    greedy = SamplingParams(temperature=0, max_tokens=16)
    before = token_ids(engine.generate(PROMPTS, greedy))
    full = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()
    if engine.on_cpu:
        with pytest.raises(Exception, match="must send every linear weight"):
            engine.update_weights((k, v) for k, v in full.items() if "layers.1." not in k)
    engine.update_weights(full.items())
    assert token_ids(engine.generate(PROMPTS, greedy)) == before


def test_unknown_weight_name_is_refused(engine, model_dir):
    greedy = SamplingParams(temperature=0, max_tokens=16)
    before = token_ids(engine.generate(PROMPTS, greedy))
    full = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()
    with pytest.raises(Exception, match="no_such"):
        engine.update_weights([*full.items(), ("model.no_such.weight", torch.zeros(3))])
    engine.update_weights(full.items())
    assert token_ids(engine.generate(PROMPTS, greedy)) == before


def test_score_matches_transformers(engine, hf):
    """Teacher-forced log-probs (``Engine.score``: vLLM's prompt log-probs) against transformers'."""
    prompts = [hf.tokenizer("Judge: 2 + 2 = 4?", add_special_tokens=False)["input_ids"], [5, 6, 7]]
    continuations = [hf.tokenizer(" [[score=4]]", add_special_tokens=False)["input_ids"], [8, 9, 10, 11]]
    ours, reference = engine.score(prompts, continuations), hf.score(prompts, continuations)
    assert [len(x) for x in ours] == [len(c) for c in continuations]
    for a, b in zip(ours, reference):
        assert a == pytest.approx(b, abs=1e-3)
    assert len({round(x, 3) for x in ours[1]}) > 1  # real numbers, not a constant
