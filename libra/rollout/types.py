"""What every rollout engine takes and returns, so judges, evaluation and the trainer never see which
engine produced a completion.

A prompt is one of three things: a ``str`` (plain text, tokenised as is), a list of chat messages
(``[{"role": ..., "content": ...}]``, rendered with the tokenizer's chat template and an open assistant
turn) or a list of token ids (used verbatim: the trainer's own sequences). Engines tokenise prompts
themselves through :func:`prompt_token_ids`, so vLLM and transformers see exactly the same ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator, Mapping, Protocol, Sequence, Union

import torch

Message = Mapping[str, str]
Prompt = Union[str, Sequence[Message], Sequence[int]]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings shared by both engines.

    ``seed`` makes a request reproducible: on vLLM the ``n`` samples of prompt ``i`` of a call use seeds
    ``seed + i*n ... seed + i*n + n - 1`` (per-request generators, so the result does not depend on what
    else is in the batch, and no two samples of a call share a seed).
    ``logprobs=True`` returns the log-probability of every sampled token under the sampling
    distribution (logits / temperature), the quantity the GRPO trainer recomputes.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None
    logprobs: bool = False
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {self.max_tokens}")
        object.__setattr__(self, "stop", tuple(self.stop))

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """A short stable fingerprint (for caches keyed by sampling settings)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class Sample:
    """One sampled continuation. ``finish_reason`` is "stop" (EOS or a stop string) or "length"."""

    token_ids: list[int]
    text: str
    finish_reason: str
    logprobs: list[float] | None = None


@dataclass
class Generation:
    """All ``n`` samples for one prompt, with the prompt's token ids."""

    prompt_token_ids: list[int]
    samples: list[Sample] = field(default_factory=list)


class Engine(Protocol):
    """The rollout engine interface (``VLLMEngine``, ``HFEngine``)."""

    tokenizer: object

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, *, progress: bool = False
                 ) -> list[Generation]: ...

    def generate_stream(self, prompts: Sequence[Prompt], params: SamplingParams) -> Iterator[tuple[int, Generation]]:
        """``generate``'s results (the same seeds, so the same samples), each prompt's ``Generation`` yielded
        with its index as soon as all its samples are done, in whatever order they finish: a consumer scores
        (or judges) finished prompts while the rest are still generating. Closing the iterator early
        cancels the prompts not yet yielded."""
        ...

    def score(self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        """Log-prob of each continuation token given the prompt and the continuation before it, at
        temperature 1 (the model's own distribution): teacher forcing, nothing sampled."""
        ...

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None: ...

    def sleep(self) -> None: ...

    def wake_up(self) -> None: ...

    def close(self) -> None: ...


def prompt_token_ids(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids for one prompt of any accepted form (see the module docstring)."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    items = list(prompt)
    if not items:
        raise ValueError("empty prompt")
    if all(isinstance(t, int) and not isinstance(t, bool) for t in items):
        return items
    if all(isinstance(m, Mapping) and "role" in m and "content" in m for m in items):
        ids = tokenizer.apply_chat_template([dict(m) for m in items], add_generation_prompt=True, tokenize=True)
        if isinstance(ids, Mapping):  # transformers >= 5 returns a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)
    raise ValueError("a prompt must be a string, a list of token ids or a list of {'role', 'content'} messages")
