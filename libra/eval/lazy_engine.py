"""An engine that starts on its first ``generate`` call.

A rerun whose generations are all in the store then never pays the engine start (about 20 s for vLLM
on CPU, minutes for a large model on GPU) just to recompute metrics.
"""

from __future__ import annotations

from typing import Callable, Sequence

from libra.rollout.types import Engine, Generation, Prompt, SamplingParams


class LazyEngine:
    def __init__(self, start: Callable[[], Engine]):
        self._start = start
        self._engine: Engine | None = None

    @property
    def started(self) -> bool:
        return self._engine is not None

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, *, progress: bool = False
                 ) -> list[Generation]:
        return self._engine_now().generate(prompts, params, progress=progress)

    @property
    def tokenizer(self):
        return self._engine_now().tokenizer

    def score(self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        return self._engine_now().score(prompts, continuations)

    def _engine_now(self) -> Engine:
        if self._engine is None:
            self._engine = self._start()
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
