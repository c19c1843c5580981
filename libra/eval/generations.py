"""Resumable generation: every finished completion is appended to ``generations.jsonl`` at once, keyed
by (sample id, template, sampling parameters, model), so a rerun after a crash or Ctrl-C generates
only what is missing, and changing any of those four never reuses a stale answer. The model part of the
key is a fingerprint of the weights (``libra.models.weights_fingerprint``), not the folder's path: a
model retrained into the same folder gets new judgments.

``run_generation`` is the one way the evaluations and rejection sampling generate: it starts the engine
lazily (not at all when everything is in the store), generates what is missing, closes an engine it
started, and says how much it reused.

A process killed mid-write can leave a partial last line; opening the store cuts it off (it is the
only line that can be partial, as lines are appended whole and flushed chunk by chunk).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Container, Mapping, Sequence

from libra.data.jsonl import DataError
from libra.eval.lazy_engine import LazyEngine
from libra.progress import progress_bar
from libra.rollout.types import Engine, Prompt, SamplingParams

# The finish reason of the samples of a prompt that did not fit the model's context: nothing was generated.
PROMPT_TOO_LONG = "prompt_too_long"


def generation_key(sample_id: str, template: str, params: SamplingParams, model: str) -> str:
    blob = json.dumps([str(sample_id), template, params.key(), model], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class Request:
    """One prompt to generate for: ``sample_id`` names it in the store and in reports."""

    sample_id: str
    prompt: Prompt


class KeyedStore:
    """Append-only JSON Lines records indexed by their ``key`` field; a later record replaces an earlier one.

    The building block of every resumable step (generations here; scores and answer labels in the eval
    commands): work is appended as soon as it is done, so a rerun redoes only what is missing.
    ``required`` names the fields (and their types) a record must have besides ``key``.
    """

    required: dict[str, type | tuple[type, ...]] = {}

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        keep = len(raw) if raw.endswith(b"\n") or not raw else raw.rfind(b"\n") + 1
        if keep < len(raw):  # a line cut off by a crash: drop it so appends stay line-aligned
            with open(self.path, "r+b") as f:
                f.truncate(keep)
        for number, line in enumerate(raw[:keep].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(self.path, number, None, f"not JSON ({err.msg}); move the file away to regenerate") \
                    from None
            if not isinstance(rec, dict) or "key" not in rec or \
                    any(not isinstance(rec.get(name), kind) for name, kind in self.required.items()):
                needs = ", ".join(repr(n) for n in ("key", *self.required))
                raise DataError(self.path, number, "key", f"not a record of this store (needs {needs})")
            self.records[rec["key"]] = rec

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict:
        return self.records[key]

    def append(self, records: Sequence[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for rec in records:
            self.records[rec["key"]] = rec


class GenerationStore(KeyedStore):
    """The generations of a run: records ``{key, id, template, params, model, samples}``."""

    required = {"samples": list}


def generate_resumable(engine: Engine, requests: Sequence[Request], params: SamplingParams, store: GenerationStore,
                       *, template: str, model: str, chunk: int = 64, progress: bool = True,
                       on_chunk: Callable[[int], None] | None = None, skip: Container[str] = ()) -> list[dict | None]:
    """Records for all ``requests`` (in order): those in ``store`` are reused, the rest are generated
    ``chunk`` prompts at a time and appended after each chunk (a crash loses at most one chunk).

    Each record: ``{key, id, template, params, model, samples: [{text, finish_reason, num_tokens}]}``.
    With ``params.seed`` set, prompt ``i`` is always sampled with seeds from ``seed + i*n`` however the run
    was interrupted (engines seed prompt ``j`` of a call from ``seed + j*n``, so each call covers a
    contiguous run of indices and starts at ``seed + first index * n``). Requests whose sample id is in
    ``skip`` are not generated and their record is None (the others keep their index, hence their seeds).
    """
    keys = [generation_key(r.sample_id, template, params, model) for r in requests]
    todo = [i for i, k in enumerate(keys) if k not in store and requests[i].sample_id not in skip]
    total = len(requests) - sum(r.sample_id in skip for r in requests)
    bar = progress_bar(total=total, initial=total - len(todo), desc="generate", unit="prompt", disable=not progress)
    for idx in _contiguous_chunks(todo, chunk):
        chunk_params = params if params.seed is None else _with_seed(params, params.seed + idx[0] * params.n)
        gens = engine.generate([requests[i].prompt for i in idx], chunk_params)
        store.append([{
            "key": keys[i], "id": requests[i].sample_id, "template": template, "params": params.to_dict(),
            "model": model,
            "samples": [{"text": s.text, "finish_reason": s.finish_reason, "num_tokens": len(s.token_ids)}
                        for s in gen.samples],
        } for i, gen in zip(idx, gens)])
        bar.update(len(idx))
        if on_chunk is not None:
            on_chunk(len(idx))
    bar.close()
    return [None if r.sample_id in skip else store.get(k) for r, k in zip(requests, keys)]


def _contiguous_chunks(indices: list[int], size: int) -> list[list[int]]:
    """``indices`` (sorted) cut into runs of consecutive numbers, each at most ``size`` long."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1 and len(runs[-1]) < size:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _with_seed(params: SamplingParams, seed: int) -> SamplingParams:
    return replace(params, seed=seed)


@dataclass
class GenerationRun:
    """What ``run_generation`` did: the records (in request order), how many prompts it generated now and
    how many it found in the store, and whether it had to start an engine."""

    records: list[dict]
    generated: int
    reused: int
    engine_started: bool
    unfit: int = 0

    def summary(self, store: GenerationStore, model_id: str) -> str:
        return (f"generations: {self.reused} reused from {store.path} (model {model_id}), {self.generated} "
                f"generated now{'' if self.engine_started or self.generated else ', no engine started'}"
                + (f", {self.unfit} not generated (prompt does not fit the context)" if self.unfit else ""))


def unfit_record(request: Request, params: SamplingParams, prompt_tokens: int) -> dict:
    """The record of a prompt that does not fit the context: ``n`` empty samples finished ``PROMPT_TOO_LONG``
    (no verdict, so each is an invalid judgment); never stored, as nothing was generated."""
    return {"id": request.sample_id, "prompt_tokens": prompt_tokens,
            "samples": [{"text": "", "finish_reason": PROMPT_TOO_LONG, "num_tokens": 0}] * params.n}


def run_generation(requests: Sequence[Request], params: SamplingParams, store: GenerationStore, *, template: str,
                   model_id: str, engine: Engine | None = None, engine_factory: Callable[[], Engine] | None = None,
                   chunk: int = 64, progress: bool = True, verbose: bool = True,
                   unfit: Mapping[str, int] | None = None) -> GenerationRun:
    """Generate what ``store`` lacks for ``requests`` with ``engine`` (used, not closed) or with an engine
    that ``engine_factory`` starts on the first prompt that needs it (closed here, also on errors).
    ``unfit``: the prompts that do not fit the context (sample id -> prompt tokens); they are not generated
    and get ``unfit_record``s, in their place in the request order.

    ``model_id`` keys the store (a weights fingerprint). On Ctrl-C the chunks already finished are saved;
    the message says so and KeyboardInterrupt propagates."""
    if (engine is None) == (engine_factory is None):
        raise ValueError("run_generation needs exactly one of engine and engine_factory")
    lazy = LazyEngine(engine_factory) if engine is None else None
    unfit = unfit or {}
    generated: list[int] = []
    try:
        records = generate_resumable(lazy or engine, requests, params, store, template=template, model=model_id,
                                     chunk=chunk, progress=progress, on_chunk=generated.append, skip=unfit)
    except KeyboardInterrupt:
        print(f"interrupted: {sum(generated)} new generations are saved in {store.path}; rerun the same command to "
              "resume", file=sys.stderr)
        raise
    finally:
        started = lazy.started if lazy is not None else True
        if lazy is not None:
            lazy.close()
    records = [unfit_record(r, params, unfit[r.sample_id]) if rec is None else rec for r, rec in zip(requests, records)]
    missing = sum(r.sample_id in unfit for r in requests)
    run = GenerationRun(records, sum(generated), len(requests) - missing - sum(generated), started, missing)
    if verbose:
        print(run.summary(store, model_id), flush=True)
    return run
