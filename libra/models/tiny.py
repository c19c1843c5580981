"""Tiny Qwen2-architecture models and a locally trained tokenizer, for tests, demos and Libra-Mini.

Nothing here touches the network: the tokenizer is a byte-level BPE trained with ``tokenizers`` on a
small embedded corpus (plus any texts the caller adds), the weights are random, and both are written
with ``save_pretrained`` (safetensors) so transformers, vLLM and our trainer load the directory like any
hub checkpoint. Sizes respect vLLM's CPU attention (head_dim >= 32; the default is 64).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Qwen-style chat format: every turn is "<|im_start|>role\ncontent<|im_end|>\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = (
    "Please act as an impartial judge and evaluate the correctness of the response to the question. "
    "The response is correct. The response is wrong. Let me check the answer step by step. "
    "Problem: compute the sum. Solution: first we add the units digits, then carry the one. "
    "Therefore the final answer is \\boxed{42}. Score = 1. Score = 2. Score = 3. Score = 4. "
    "[[A>B]] [[B>A]] [[A=B]] <think> </think> correct wrong verdict reference answer question response "
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 + - * / = ( ) \\frac{1}{2} x^2 + y^2 = z^2 "
    "The quick brown fox jumps over the lazy dog. Hello world! What is the capital of France? "
)


@dataclass(frozen=True)
class TinyConfig:
    """Model size. ``hidden_size / num_attention_heads`` is the head dim (>= 32 for vLLM on CPU)."""

    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = True
    seed: int = 0


def train_tokenizer(texts: Iterable[str] = (), vocab_size: int = 512, *, split_digits: bool = False):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with Qwen-style special tokens and chat template.

    Byte-level means every string encodes (no unknown token), which judging prompts with arbitrary
    model output need. ``vocab_size`` counts the 256 byte symbols and the special tokens.
    ``split_digits`` gives every digit its own token (as Qwen's tokenizer does), so a small model can
    learn arithmetic column by column instead of memorising merged digit groups.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]) \
        if split_digits else byte_level
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([_CORPUS, *texts], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, chat_template=CHAT_TEMPLATE,
                                   model_max_length=1 << 20)


def build_model(tokenizer, config: TinyConfig = TinyConfig(), *, num_labels: int | None = None):
    """A random Qwen2 model sized by ``config`` for ``tokenizer``: a causal LM, or a sequence classifier
    (a scalar reward model) when ``num_labels`` is given."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification

    cfg = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=config.tie_word_embeddings, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None, torch_dtype="float32",
    )
    torch.manual_seed(config.seed)
    if num_labels is None:
        return Qwen2ForCausalLM(cfg).eval()
    cfg.num_labels = num_labels
    return Qwen2ForSequenceClassification(cfg).eval()


def save_tiny(out: str | Path, config: TinyConfig = TinyConfig(), *, texts: Iterable[str] = (),
              num_labels: int | None = None, split_digits: bool = False) -> Path:
    """Train a tokenizer, build a model and save both to ``out`` (reused when ``out`` already holds the
    same configuration). Returns the directory, ready for ``from_pretrained`` or ``vllm.LLM``."""
    out = Path(out)
    texts = list(texts)
    stamp = {"config": asdict(config), "num_labels": num_labels, "texts": len(texts),
             "text_chars": sum(map(len, texts)), "split_digits": split_digits}
    marker = out / "tiny_config.json"
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return out
    tokenizer = train_tokenizer(texts, config.vocab_size, split_digits=split_digits)
    model = build_model(tokenizer, config, num_labels=num_labels)
    if num_labels is None:  # a sequence classifier does not generate, so it has no generation config
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    marker.write_text(json.dumps(stamp, indent=1))
    return out


def point_eos_along_the_mean_state(model_dir: str, alpha: float, seed: int) -> None:
    """Rewrite the model's (tied) EOS row as ``alpha * m / |m|^2``, m the mean final hidden state over one
    sampled continuation: the EOS logit is then ~alpha at every position, so a random model ends its
    completions at varied lengths instead of always at the limit."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 12 + 34? Think step by step."}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    torch.manual_seed(seed)
    with torch.no_grad():
        sampled = model.generate(ids, do_sample=True, max_new_tokens=200, min_new_tokens=200)
        mean = model.model(sampled).last_hidden_state[0].mean(0)
        model.get_output_embeddings().weight[tokenizer.eos_token_id] = alpha * mean / mean.norm() ** 2
    model.save_pretrained(model_dir)
