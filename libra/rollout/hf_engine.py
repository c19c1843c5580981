"""``HFEngine``: transformers ``generate`` behind the rollout interface.

The reference and the fallback: it needs nothing beyond transformers, runs any model transformers runs,
and its log-probabilities come from the same forward pass the trainer uses. It is slower than vLLM at
scale (no paged attention, no continuous batching). Prompts are generated in micro-batches of
``batch_size``, left-padded; with a seed the whole call is reproducible (one generator per call, so
unlike vLLM the samples of a prompt do depend on the batch it was in). ``generate_stream`` hands each
micro-batch over as soon as it is generated.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

import torch

from libra.progress import progress_bar
from libra.rollout.logprob_check import sequence_logprobs
from libra.rollout.types import Generation, Prompt, Sample, SamplingParams, prompt_token_ids

# torch's default generators belong to the process, not to an engine: engines sampling in two threads at
# once (a rollout stream beside a judge) take turns, each with its own call's state swapped in.
_RNG_LOCK = threading.Lock()


class _CallRandomState:
    """The random state of one generate call, carried from micro-batch to micro-batch, so that a call's
    samples do not depend on what other engines of the process sample between its micro-batches (a
    streamed call yields between them). Seeded calls start from ``seed``; unseeded ones from the global
    state at the call, which they leave as it was (as one ``fork_rng`` around the call did)."""

    def __init__(self, seed: int | None, device: torch.device):
        self.devices = [device] if device.type == "cuda" else []
        with _RNG_LOCK, torch.random.fork_rng(devices=self.devices):
            if seed is not None:
                torch.manual_seed(seed)
            self.states = self._get()

    def _get(self) -> list[torch.Tensor]:
        return [torch.get_rng_state(), *(torch.cuda.get_rng_state(d) for d in self.devices)]

    @contextmanager
    def turn(self):
        """Run a micro-batch with this call's state (and keep what it drew), the process's left untouched."""
        with _RNG_LOCK, torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.states[0])
            for device, state in zip(self.devices, self.states[1:]):
                torch.cuda.set_rng_state(state, device)
            yield
            self.states = self._get()


class HFEngine:
    def __init__(self, model: str, *, dtype: str = "float32", device: str | None = None, batch_size: int = 16,
                 trust_remote_code: bool = False):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.model = AutoModelForCausalLM.from_pretrained(
            model, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code, use_safetensors=True,
        ).to(self.device).eval()
        self.batch_size = batch_size
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else \
            self.tokenizer.eos_token_id
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else self.tokenizer.eos_token_id])

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, *, progress: bool = False
                 ) -> list[Generation]:
        bar = progress_bar(total=len(prompts), desc="generate (hf)", unit="prompt", disable=not progress)
        out: list[Generation] = []
        for _, gen in self.generate_stream(prompts, params):
            out.append(gen)
            bar.update(1)
        bar.close()
        return out

    def generate_stream(self, prompts: Sequence[Prompt], params: SamplingParams) -> Iterator[tuple[int, Generation]]:
        """``Engine.generate_stream``: each micro-batch's prompts, in order, as soon as that micro-batch is
        generated (``generate`` is this, collected)."""
        ids = [prompt_token_ids(self.tokenizer, p) for p in prompts]
        rng = _CallRandomState(params.seed, self.device)
        for start in range(0, len(ids), self.batch_size):
            with rng.turn(), torch.inference_mode():
                gens = self._generate_batch(ids[start:start + self.batch_size], params)
            yield from enumerate(gens, start)

    def score(self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        """``Engine.score``: the trainer's own log-prob computation (``sequence_logprobs``), ``batch_size``
        sequences at a time."""
        out: list[list[float]] = []
        for start in range(0, len(prompts), self.batch_size):
            end = start + self.batch_size
            out += [t.tolist() for t in sequence_logprobs(self.model, prompts[start:end], continuations[start:end])]
        return out

    def _generate_batch(self, batch: list[list[int]], params: SamplingParams) -> list[Generation]:
        width = max(map(len, batch))
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for row, seq in enumerate(batch):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(seq):] = torch.tensor(seq)
            attention[row, width - len(seq):] = 1
        greedy = params.temperature == 0
        result = self.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
            do_sample=not greedy, temperature=None if greedy else params.temperature,
            top_p=None if greedy else params.top_p, top_k=None, max_new_tokens=params.max_tokens,
            num_return_sequences=params.n, pad_token_id=self.pad_id, eos_token_id=sorted(self.eos_ids),
            stop_strings=list(params.stop) or None, tokenizer=self.tokenizer if params.stop else None,
            return_dict_in_generate=True, output_logits=params.logprobs,
        )
        new = result.sequences[:, width:].cpu()
        logp = None
        if params.logprobs:  # log-probs of the sampled tokens under softmax(logits / T), as the trainer computes
            logits = torch.stack(result.logits, dim=1).float() / (params.temperature or 1.0)
            logp = torch.log_softmax(logits, dim=-1).gather(-1, new.to(logits.device)[..., None])[..., 0].cpu()
        gens = [Generation(prompt_token_ids=list(seq)) for seq in batch]
        for row in range(new.shape[0]):
            tokens, reason = self._trim(new[row].tolist(), params)
            gens[row // params.n].samples.append(Sample(
                token_ids=tokens, text=self.tokenizer.decode(tokens, skip_special_tokens=True),
                finish_reason=reason, logprobs=logp[row, :len(tokens)].tolist() if logp is not None else None))
        return gens

    def _trim(self, tokens: list[int], params: SamplingParams) -> tuple[list[int], str]:
        """Cut at the first EOS (kept, as vLLM keeps it) or at the end of a stop string."""
        for i, t in enumerate(tokens):
            if t in self.eos_ids:
                return tokens[:i + 1], "stop"
        if params.stop:
            text = ""
            for i, t in enumerate(tokens):
                text += self.tokenizer.decode([t])
                if any(s in text for s in params.stop):
                    return tokens[:i + 1], "stop"
        return tokens, "length"

    @torch.no_grad()
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy the trainer's tensors into the model (names as in the model's ``state_dict``)."""
        params = self.model.state_dict()
        for name, tensor in named_tensors:
            if name not in params:
                raise KeyError(f"HFEngine.update_weights: the model has no tensor named {name!r}")
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))

    def sleep(self) -> None:
        """Nothing to release: the model stays where it is (the trainer usually owns this model anyway)."""

    def wake_up(self) -> None:
        """See ``sleep``."""

    def close(self) -> None:
        self.model = None
