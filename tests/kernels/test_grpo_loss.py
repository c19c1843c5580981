"""grpo_loss and linear_grpo_loss: loss, stats and gradients against the float64 reference."""
import pytest
import reference as ref
import torch
from helpers import BACKENDS, DEVICE, DTYPES, assert_grad, assert_output, assert_stats, twin

import libra_kernels as lk

AGGS = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
NORM_LEN = 16  # Dr. GRPO's constant, whenever agg="seq-mean-token-sum-norm"
FLOAT_INPUTS = ("logp", "old_logp", "advantages", "ref_logp")


def grpo_batch(batch=4, length=13, adv_level="seq", spread=0.3):
    """Ratios on both sides of the clip range, a random mask and one fully masked sequence."""
    logp = -4 * torch.rand(batch, length)
    mask = torch.rand(batch, length) < 0.7
    mask[1] = False
    mask[0, 0] = True
    adv_shape = (batch,) if adv_level == "seq" else (batch, length)
    tensors = dict(
        logp=logp,
        old_logp=logp + spread * torch.randn(batch, length),
        advantages=torch.randn(adv_shape),
        mask=mask,
        ref_logp=logp + 0.5 * torch.randn(batch, length),
    )
    return {k: v.to(DEVICE) for k, v in tensors.items()}


def check_grpo(backend, data, dtype=torch.float32, use_ref=False, **options):
    """Compare loss, stats and d loss / d logp with the reference; float inputs share logp's dtype."""
    data = {k: v.to(dtype) if k in FLOAT_INPUTS else v for k, v in data.items()}
    logp, logp_ref = twin(data["logp"], dtype)
    args = data["old_logp"], data["advantages"], data["mask"]
    if use_ref:
        options["ref_logp"] = data["ref_logp"]
    if options.get("agg") == "seq-mean-token-sum-norm":
        options["norm_len"] = NORM_LEN
    loss, stats = lk.grpo_loss(logp, *args, backend=backend, **options)
    loss_ref, stats_ref = ref.grpo_loss(logp_ref, *args, **options)
    assert loss.shape == ()
    assert_output(loss, loss_ref, dtype)
    assert_stats(stats, stats_ref)
    loss.backward()
    loss_ref.backward()
    assert_grad(logp.grad, logp_ref.grad)
    return loss, stats, logp.grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("adv_level", ["seq", "token"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_grpo_loss(backend, agg, adv_level, dtype):
    check_grpo(backend, grpo_batch(adv_level=adv_level), dtype, agg=agg)


OPTION_CASES = {
    "dual-clip": (dict(spread=1.5), dict(dual_clip=3.0)),
    **{f"kl-{kind}": ({}, dict(use_ref=True, kl_coef=1e-3, kl_kind=kind))
       for kind in ["k1", "k2", "k3", "abs"]},
    "kl-stat-only": ({}, dict(use_ref=True)),
    "custom-eps": (dict(spread=0.5), dict(eps_low=0.1, eps_high=0.4)),
    "ratio-clamp": (dict(spread=25.0), {}),
    "long-sequences": (dict(batch=2, length=1100, adv_level="token"), {}),
    "combined": (dict(spread=1.5, adv_level="token", batch=3, length=33),
                 dict(dual_clip=2.0, use_ref=True, kl_coef=0.1, kl_kind="k2", agg="token-mean")),
    # GSPO's sequence ratio: small spreads so some sequences clip at GSPO's own eps, some do not
    "gspo": (dict(spread=0.01), dict(ratio_level="sequence", eps_low=3e-4, eps_high=4e-4)),
    "gspo-wide": (dict(spread=0.5), dict(ratio_level="sequence", use_ref=True, kl_coef=1e-3)),
    "gspo-token-mean": (dict(spread=0.3), dict(ratio_level="sequence", agg="token-mean", dual_clip=3.0)),
    "dr-grpo": (dict(spread=0.3), dict(agg="seq-mean-token-sum-norm", use_ref=True, kl_coef=1e-3)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_options, options", OPTION_CASES.values(), ids=OPTION_CASES.keys())
def test_grpo_loss_options(backend, batch_options, options):
    check_grpo(backend, grpo_batch(**batch_options), **options)


def gspo_objective(logp, old_logp, advantages, mask, eps_low, eps_high):
    """GSPO's objective as its paper writes it, in float64: the mean over sequences (those with a live
    token) of max(-A s, -A clip(s)), with s = exp(mean over the sequence's tokens of (logp - old)),
    differentiable through that mean."""
    losses = []
    for b in range(logp.shape[0]):
        live = mask[b].bool()
        if live.any():
            s = (logp[b][live] - old_logp[b][live].double()).mean().exp()
            a = advantages[b].double()
            losses.append(torch.maximum(-a * s, -a * s.clamp(1 - eps_low, 1 + eps_high)))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sequence_ratios_are_gspo_only_with_seq_mean_token_mean(backend):
    """ratio_level="sequence" with agg="seq-mean-token-mean" is GSPO's objective, loss and gradient; with
    "token-mean" each sequence counts by its share of tokens, which is not GSPO's (for unequal lengths)."""
    data = grpo_batch(batch=5, length=17, spread=0.3)
    eps = dict(eps_low=0.2, eps_high=0.28)
    lengths = data["mask"].sum(-1)
    assert len(set(lengths[lengths > 0].tolist())) > 1  # unequal lengths, where the two differ
    paper_logp = data["logp"].double().requires_grad_()
    paper = gspo_objective(paper_logp, data["old_logp"], data["advantages"], data["mask"], **eps)
    paper.backward()
    losses = {}
    for agg in ("seq-mean-token-mean", "token-mean"):
        logp = data["logp"].clone().requires_grad_()
        loss, _ = lk.grpo_loss(logp, data["old_logp"], data["advantages"], data["mask"], ratio_level="sequence",
                               agg=agg, backend=backend, **eps)
        loss.backward()
        losses[agg] = loss, logp.grad
    loss, grad = losses["seq-mean-token-mean"]
    assert_output(loss, paper)
    assert_grad(grad, paper_logp.grad)
    loss, grad = losses["token-mean"]
    assert abs(loss.item() - paper.item()) > 1e-3 and (grad.double() - paper_logp.grad).abs().max() > 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_dual_clip_bounds_negative_advantage_loss(backend):
    """With A < 0 and ratios far above c, each token's loss is capped at -A * c."""
    data = grpo_batch(batch=2, length=5)
    data["old_logp"] = data["logp"] - 3.0  # ratio e^3 > c = 3
    data["advantages"] = -torch.rand(2, device=DEVICE) - 0.5
    data["mask"][:] = True
    loss, _, _ = check_grpo(backend, data, dual_clip=3.0, agg="token-mean")
    assert loss.item() == pytest.approx(-3.0 * data["advantages"].mean().item(), rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float32, torch.int64])
def test_grpo_loss_mask_dtypes(backend, mask_dtype):
    """Response masks arrive as bool, float or integer tensors (verl uses integers)."""
    data = grpo_batch()
    data["mask"] = data["mask"].to(mask_dtype)
    check_grpo(backend, data)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("agg", AGGS)
def test_grpo_loss_fully_masked_batch(backend, agg):
    """An all-padding micro-batch gives loss 0, stats 0 (verl's masked_mean) and a real zero gradient
    (FSDP needs grads everywhere)."""
    data = grpo_batch()
    data["mask"][:] = False
    loss, _, grad = check_grpo(backend, data, use_ref=True, kl_coef=1e-3, agg=agg)
    assert loss.item() == 0.0
    assert torch.all(grad == 0)


def packed(data, lengths=(5, 1, 7, 4), adv_level="seq"):
    """Several sequences per row: ``segment_ids`` [B, T] with a few sequences per row (and a pad run of id
    -1 at the end of a row, masked), advantages per token (a sequence's advantage at each of its tokens)."""
    b, t = data["logp"].shape
    ids = torch.full((b, t), -1, dtype=torch.long, device=DEVICE)
    next_id = 0
    for row in range(b):
        at = 0
        for n in lengths:
            if at + n > t - 1:
                break
            ids[row, at:at + n] = next_id
            next_id, at = next_id + 1, at + n
    data["mask"] = data["mask"] & (ids >= 0)
    per_seq = torch.randn(next_id + 1, device=DEVICE)
    data["advantages"] = per_seq[ids] if adv_level == "seq" else data["advantages"].expand(b, t).contiguous()
    return data, ids


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
def test_grpo_loss_packed_sequences(backend, agg, ratio_level):
    """segment_ids: each sequence of a packed row is aggregated (and, for GSPO, ratioed) on its own."""
    data, ids = packed(grpo_batch(batch=3, length=19, spread=0.3))
    check_grpo(backend, data, segment_ids=ids, agg=agg, ratio_level=ratio_level, use_ref=True, kl_coef=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
def test_one_packed_row_equals_the_padded_batch(backend, agg, ratio_level):
    """The same sequences as padded rows or concatenated into one row with segment ids: same loss,
    stats and per-token gradients (what the trainer's packed passes rely on)."""
    torch.manual_seed(1)
    data = grpo_batch(batch=4, length=9, spread=0.3)
    data["mask"][1, 0] = True  # every sequence has a token: the packed row keeps them all
    norm = {"norm_len": NORM_LEN} if agg == "seq-mean-token-sum-norm" else {}
    options = dict(agg=agg, ratio_level=ratio_level, kl_coef=1e-3, backend=backend, **norm)
    lengths = [int(row.nonzero().max()) + 1 for row in data["mask"]]
    logp = data["logp"].clone().requires_grad_()
    loss, stats = lk.grpo_loss(logp, data["old_logp"], data["advantages"], data["mask"],
                               ref_logp=data["ref_logp"], **options)
    loss.backward()

    def cat(t):
        return torch.cat([t[b, :n] for b, n in enumerate(lengths)])[None]

    ids = cat(torch.arange(4, device=DEVICE)[:, None].expand(4, 9))
    flat = cat(data["logp"]).clone().requires_grad_()
    adv = cat(data["advantages"][:, None].expand(4, 9))
    loss_p, stats_p = lk.grpo_loss(flat, cat(data["old_logp"]), adv, cat(data["mask"]),
                                   ref_logp=cat(data["ref_logp"]), segment_ids=ids, **options)
    loss_p.backward()
    torch.testing.assert_close(loss_p, loss, rtol=1e-6, atol=1e-7)
    for key in stats:
        torch.testing.assert_close(stats_p[key], stats[key], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(flat.grad, cat(logp.grad), rtol=1e-6, atol=1e-8)


def test_loss_family_arguments_are_checked():
    data = grpo_batch()
    args = data["logp"], data["old_logp"], data["advantages"], data["mask"]
    with pytest.raises(ValueError, match="norm_len"):
        lk.grpo_loss(*args, agg="seq-mean-token-sum-norm")
    with pytest.raises(ValueError, match="ratio_level"):
        lk.grpo_loss(*args, ratio_level="group")
    with pytest.raises(ValueError, match="segment_ids must be an integer"):
        lk.grpo_loss(*args, segment_ids=data["logp"])
    with pytest.raises(ValueError, match="segment_ids has shape"):
        lk.grpo_loss(*args, segment_ids=torch.zeros(2, 2, dtype=torch.long, device=DEVICE))


def linear_batch(batch, length, hidden_size, vocab, dtype, with_bias, temperature=1.0):
    """(kernel input, float64 twin) pairs for hidden, weight, bias; old log-probs near the current ones."""
    twins = (
        twin(torch.randn(batch, length, hidden_size), dtype),
        twin(2 * torch.randn(vocab, hidden_size) / hidden_size**0.5, dtype),
        twin(0.5 * torch.randn(vocab), dtype) if with_bias else (None, None),
    )
    targets = torch.randint(0, vocab, (batch, length), device=DEVICE)
    current, _ = ref.token_logprobs(ref.linear_logits(*(pair[1] for pair in twins)), targets, temperature)
    current = current.detach().float()
    data = grpo_batch(batch, length)
    data["old_logp"] = current + 0.3 * torch.randn_like(current)
    data["ref_logp"] = current + 0.5 * torch.randn_like(current)
    return twins, targets, data


LINEAR_CASES = {
    "defaults": ((3, 7, 40, 257), {}),
    "all-options": ((2, 9, 64, 600), dict(temperature=0.7, agg="token-mean", dual_clip=3.0,
                                         use_ref=True, kl_coef=1e-3, kl_kind="k3")),
    "seq-sum": ((4, 40, 96, 300), dict(temperature=1.5, agg="seq-mean-token-sum")),
    "gspo": ((3, 11, 48, 333), dict(ratio_level="sequence", use_ref=True, kl_coef=1e-3)),
    "dr-grpo-packed": ((2, 19, 40, 257), dict(agg="seq-mean-token-sum-norm", norm_len=NORM_LEN, packed=True)),
    "gspo-packed": ((2, 19, 40, 257), dict(ratio_level="sequence", temperature=0.7, packed=True)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes, options", LINEAR_CASES.values(), ids=LINEAR_CASES.keys())
def test_linear_grpo_loss(backend, with_bias, dtype, sizes, options):
    options = dict(options)
    twins, targets, data = linear_batch(*sizes, dtype, with_bias, options.get("temperature", 1.0))
    if options.pop("use_ref", False):
        options["ref_logp"] = data["ref_logp"]
    if options.pop("packed", False):
        data, options["segment_ids"] = packed(data)
    (hidden, hidden_ref), (weight, weight_ref), (bias, bias_ref) = twins
    args = targets, data["old_logp"], data["advantages"], data["mask"]
    loss, stats = lk.linear_grpo_loss(hidden, weight, *args, bias=bias, return_entropy=True,
                                      backend=backend, **options)
    loss_ref, stats_ref = ref.linear_grpo_loss(hidden_ref, weight_ref, *args, bias=bias_ref, **options)
    assert_output(loss, loss_ref, dtype)
    assert_stats(stats, stats_ref)
    loss.backward()
    loss_ref.backward()
    for kernel_leaf, ref_leaf in twins:
        if kernel_leaf is not None:
            assert_grad(kernel_leaf.grad, ref_leaf.grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_grpo_loss_matches_composition(backend):
    """The fused loss equals grpo_loss(linear_token_logprobs(...)), value, stats and gradients."""
    temperature = 0.7
    twins, targets, data = linear_batch(3, 11, 48, 333, torch.float32, True, temperature)
    hidden, weight, bias = (pair[0] for pair in twins)
    args = data["old_logp"], data["advantages"], data["mask"]
    options = dict(ref_logp=data["ref_logp"], kl_coef=1e-3, dual_clip=3.0, backend=backend)
    fused, fused_stats = lk.linear_grpo_loss(hidden, weight, targets, *args, bias=bias,
                                             temperature=temperature, **options)
    fused_grads = torch.autograd.grad(fused, (hidden, weight, bias))
    logp = lk.linear_token_logprobs(hidden, weight, targets, bias=bias, temperature=temperature,
                                    backend=backend)
    composed, composed_stats = lk.grpo_loss(logp, *args, **options)
    composed_grads = torch.autograd.grad(composed, (hidden, weight, bias))
    torch.testing.assert_close(fused, composed, rtol=1e-5, atol=1e-6)
    assert_stats(fused_stats, composed_stats)
    for fused_grad, composed_grad in zip(fused_grads, composed_grads):
        assert_grad(fused_grad, composed_grad.double())
