"""The tiny local Qwen2 factory: what the rollout tests, demos and vLLM rely on."""

import json

import pytest
from transformers import AutoConfig, AutoTokenizer

from libra.models.tiny import TinyConfig, save_tiny


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny"), TinyConfig())


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.mark.parametrize("text", ["The answer is \\boxed{42}.", "naïve café – 数学 😀 ∑x²", "  tabs\tand\nnewlines ",
                                  "<|im_end|> inside text"])
def test_tokenizer_round_trips_any_text(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_chat_template_renders_qwen_format(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id


def test_model_files_and_shapes_suit_vllm(model_dir):
    config = AutoConfig.from_pretrained(model_dir)
    assert config.hidden_size // config.num_attention_heads >= 32  # vLLM's CPU attention rejects head_dim 16
    assert (model_dir / "model.safetensors").is_file()
    assert not list(model_dir.glob("*.bin"))
    assert config.vocab_size == len(AutoTokenizer.from_pretrained(model_dir))


def test_second_save_reuses_directory(model_dir):
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    assert save_tiny(model_dir, TinyConfig()) == model_dir
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == before
    assert json.loads((model_dir / "tiny_config.json").read_text())["config"]["hidden_size"] == 128


def test_other_config_rewrites_directory(tmp_path):
    out = save_tiny(tmp_path, TinyConfig(num_hidden_layers=1))
    save_tiny(out, TinyConfig(num_hidden_layers=3))
    assert AutoConfig.from_pretrained(out).num_hidden_layers == 3
