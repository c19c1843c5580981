"""A real transformers engine that counts what it is asked to generate (resume tests: a rerun must not
regenerate finished work) and can be told to raise KeyboardInterrupt on its n-th call."""
import pytest

from libra.rollout import HFEngine


class CountingEngine(HFEngine):
    def __init__(self, model):
        super().__init__(str(model))
        self.calls, self.interrupt_on = [], None

    @property
    def prompts(self) -> int:
        return sum(self.calls)

    def generate(self, prompts, params, **kwargs):
        self.calls.append(len(prompts))
        if len(self.calls) == self.interrupt_on:
            raise KeyboardInterrupt
        return super().generate(prompts, params, **kwargs)


@pytest.fixture
def counting_engine():
    """``counting_engine(model_dir)`` -> a CountingEngine."""
    return CountingEngine
