"""Learning-rate schedules of the paper's recipes, and which steps a new run length moves."""
import pytest

from libra.train.optim import OptimConfig, first_changed_step, lr_factor


def test_cosine_warms_up_then_decays_to_the_floor():
    cfg = OptimConfig(lr=1e-5, min_lr=1e-6, schedule="cosine", warmup_ratio=0.1)
    factors = [lr_factor(s, 100, cfg) for s in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] == pytest.approx(0.1, abs=2e-3)  # 1e-6 / 1e-5


def test_constant_after_warmup():
    cfg = OptimConfig(lr=1e-6, schedule="constant", warmup_ratio=0.03)
    assert [lr_factor(s, 100, cfg) for s in (0, 2, 3, 50, 99)] == pytest.approx([1 / 3, 1.0, 1.0, 1.0, 1.0])


def test_a_new_length_moves_a_decay_but_not_a_constant_rate_past_its_warmup():
    cosine = OptimConfig(lr=1e-5, min_lr=1e-6, schedule="cosine", warmup_ratio=0.0)
    assert first_changed_step(cosine, 100, 200, 40) == 40 and first_changed_step(cosine, 100, 100, 40) is None
    constant = OptimConfig(lr=1e-6, schedule="constant", warmup_ratio=0.03)
    assert first_changed_step(constant, 100, 200, 40) is None  # ceil(3) vs ceil(6) warmup steps: both over by 40
    assert first_changed_step(constant, 100, 200, 0) == 0
