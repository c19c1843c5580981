"""GRPO's update on its two micro-batch layouts and with the loss family's masks, in this process on a
tiny model: packed (token-budget) micro-batches give the padded path's gradients to fp32 rounding for every
loss variant; a masked (truncated) rollout leaves every denominator, exactly as if it were not there; and the
rollout correction on a real engine/trainer mismatch (the engine sampling at another temperature) drops and
caps the share of tokens computed independently from the two log-probs."""
import json

import pytest
import torch

from libra.config import load_config
from libra.models.tiny import save_tiny
from libra.rollout import HFEngine, SamplingParams
from libra.train.grpo import GRPOConfig, Rollout, assign_advantages, compute_logprobs, update
from libra.train.rl_batches import micro_batches
from libra.train.session import TrainSession

VARIANTS = {
    "grpo": [],
    "dapo-token-mean": ["loss.agg=token-mean"],
    "dr-grpo": ["loss.agg=seq-mean-token-sum-norm", "loss.scale_advantages=false"],
    "gspo": ["loss.ratio_level=sequence", "loss.eps_low=3e-4", "loss.eps_high=4e-4"],
    "tis-token": ["loss.rollout_correction=tis-token", "loss.correction_high=1.05"],
    "mask-seq": ["loss.rollout_correction=mask-seq", "loss.correction_low=0.9", "loss.correction_high=1.1"],
}
LAYOUTS = {"packed": ["run.rl_layout=packed"], "bucketed": ["run.rl_layout=bucketed"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo-paths")
    model = save_tiny(root / "tiny")
    (root / "rl.jsonl").write_text(json.dumps({"question": "q", "answer": "A", "task": "reasoning"}) + "\n")
    engine = HFEngine(str(model))
    prompts = [[{"role": "user", "content": "Say " + "A" * k}] for k in (1, 7, 3)]  # prompts of varied length
    gens = engine.generate(prompts, SamplingParams(n=4, temperature=1.3, max_tokens=12, seed=3, logprobs=True))
    samples = [(g, list(gen.prompt_token_ids), list(s.token_ids), list(s.logprobs), s.finish_reason == "length")
               for g, gen in enumerate(gens) for s in gen.samples]
    return root, model, samples


def _cfg(root, model, out, *extra):
    return load_config(GRPOConfig, None, [
        f"model.path={model}", f"data.train={root / 'rl.jsonl'}", "data.task=reasoning", "data.prompts_per_step=3",
        "run.global_batch_size=3", "rollout.engine=hf", "rollout.n=4", "rollout.max_tokens=12",
        "rollout.temperature=0.7", "loss.kl_coef=1e-3", "optim.grad_clip=1e9", "run.tensorboard=false",
        "run.export=false", f"run.out={out}", *extra])


def _rollouts(samples):
    out = [Rollout(g, p, r, e, float(k % 3 == 0), k % 3 == 0, t) for k, (g, p, r, e, t) in enumerate(samples)]
    assign_advantages(out, 4, dynamic=False)
    return out


def _gradients(cfg, rollouts, *, on_policy=False):
    """The update's gradients as the optimizer receives them (after the normaliser), and its stats."""
    seen = {}
    with TrainSession(cfg, total_steps=2, desc="test") as session:
        reference = session.build_reference()
        session.model.eval()
        compute_logprobs(session, session.model, rollouts, "old_logp", cfg.rollout.temperature)
        compute_logprobs(session, reference, rollouts, "ref_logp", cfg.rollout.temperature)
        session.model.train()
        real_step = session.optimizer.step

        def record(*a, **k):
            seen.update({n: p.grad.detach().clone() for n, p in session.model.named_parameters()})
            return real_step(*a, **k)

        session.optimizer.step = record
        stats = update(session, cfg, rollouts, on_policy=on_policy)
    return seen, stats


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_token_budget_micro_batches_equal_the_padded_ones(setup, tmp_path, variant, layout):
    root, model, samples = setup
    bins = micro_batches(_rollouts(samples), 5, 128, packed=layout == "packed")
    assert len(bins) < len(samples) / 2 and max(map(len, bins)) > 2  # the budget really groups rollouts
    padded, stats_a = _gradients(_cfg(root, model, tmp_path / "a", "run.micro_batch_size=5", *VARIANTS[variant]),
                                 _rollouts(samples))
    packed, stats_b = _gradients(_cfg(root, model, tmp_path / "b", "run.max_tokens_per_micro_batch=128",
                                      *LAYOUTS[layout], *VARIANTS[variant]), _rollouts(samples))
    assert stats_a["grad_norm"] > 0
    _assert_same(padded, packed)
    for key in ("clipfrac_high", "clipfrac_low", "ppo_kl", "kl", "entropy", "is_capped", "correction_dropped"):
        assert stats_b[key] == pytest.approx(stats_a[key], rel=1e-4, abs=1e-7), key


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "token-mean"])
def test_a_masked_rollout_leaves_every_denominator(setup, tmp_path, agg):
    """loss.mask_truncated: a truncated rollout's tokens are masked; the gradient must equal the one
    without that rollout at all (same advantages), on several micro-batches (the global normaliser)."""
    root, model, samples = setup
    rows = _rollouts(samples)
    for i, r in enumerate(rows):
        r.truncated = i in (2, 7)
    kept = [r for i, r in enumerate(rows) if i not in (2, 7)]
    extra = ["loss.mask_truncated=true", f"loss.agg={agg}", "run.micro_batch_size=3"]
    with_masked, stats = _gradients(_cfg(root, model, tmp_path / "a", *extra), rows)
    without, _ = _gradients(_cfg(root, model, tmp_path / "b", *extra), [Rollout(**{**vars(r)}) for r in kept])
    _assert_same(with_masked, without)
    masked_share = sum(len(rows[i].response_ids) for i in (2, 7)) / sum(len(r.response_ids) for r in rows)
    assert stats["truncation_masked"] == pytest.approx(masked_share)


@pytest.mark.parametrize("mode", ["mask-token", "tis-token"])
def test_rollout_correction_on_a_real_temperature_mismatch(setup, tmp_path, mode):
    """The engine sampled at T=1.3; the trainer computes old log-probs at T=0.7: a real mismatch. The
    share of tokens dropped (mask) or capped (TIS) is what the two log-probs say, counted here apart."""
    root, model, samples = setup
    cfg = _cfg(root, model, tmp_path / "c", f"loss.rollout_correction={mode}", "loss.correction_low=0.8",
               "loss.correction_high=1.25", "run.micro_batch_size=4")
    rows = _rollouts(samples)
    _, stats = _gradients(cfg, rows, on_policy=True)
    ratio = torch.cat([torch.exp(r.old_logp - torch.tensor(r.engine_logp)) for r in rows])
    outside = float(((ratio < 0.8) | (ratio > 1.25)).float().mean())
    above = float((ratio > 1.25).float().mean())
    assert 0.05 < outside < 0.95  # the mismatch is real, and not total
    if mode == "mask-token":
        assert stats["correction_dropped"] == pytest.approx(outside, abs=1e-6) and stats["is_capped"] == 0
    else:
        assert stats["is_capped"] == pytest.approx(above, abs=1e-6) and stats["correction_dropped"] == 0


@pytest.mark.parametrize("mode, same_as", [("mask-token", ["loss.rollout_correction=tis-token"]), ("reject-token", [])])
def test_bounds_that_drop_nothing_leave_masked_is_and_rejection_apart(setup, tmp_path, mode, same_as):
    """On the real T 1.3 / 0.7 mismatch with bounds that hold every ratio: masked IS weights each token by
    its ratio, so its gradient is TIS's with a cap above every ratio; rejection keeps weight 1, so its
    gradient is the uncorrected one. (mask-token used to be rejection: it gave the uncorrected gradient.)"""
    root, model, samples = setup
    bounds = ["loss.correction_low=0", "loss.correction_high=1e6", "run.micro_batch_size=4"]
    corrected, stats = _gradients(_cfg(root, model, tmp_path / "a", f"loss.rollout_correction={mode}", *bounds),
                                  _rollouts(samples))
    reference, ref_stats = _gradients(_cfg(root, model, tmp_path / "b", *same_as, *bounds), _rollouts(samples))
    assert stats["correction_dropped"] == 0 and ref_stats["is_capped"] == 0
    _assert_same(corrected, reference)
    if mode == "mask-token":  # and the ratio weights are not nothing: the uncorrected gradient differs
        uncorrected, _ = _gradients(_cfg(root, model, tmp_path / "c", *bounds), _rollouts(samples))
        with pytest.raises(AssertionError):
            _assert_same(corrected, uncorrected)
