"""token_logprobs and linear_token_logprobs against the float64 reference on both backends."""
import math

import pytest
import reference as ref
import torch
from helpers import BACKENDS, DEVICE, DTYPES, assert_grad, assert_output, backprop, twin

import libra_kernels as lk

# (leading dims, vocabulary, temperature): odd sizes so no kernel gets a power-of-two gift, and a
# vocabulary of 9000 that spans several of any kernel's vocabulary tiles.
LOGIT_CASES = [((5,), 7, 1.0), ((37,), 257, 0.7), ((2, 3), 1000, 1.5), ((3,), 9000, 1.0)]
# (leading dims, hidden, vocabulary, temperature); 130 tokens span several token tiles.
LINEAR_CASES = [((13,), 40, 257, 1.0), ((2, 3), 64, 600, 0.7), ((37,), 96, 1000, 1.5),
                ((2, 65), 40, 300, 1.0)]


def random_targets(lead, vocab):
    return torch.randint(0, vocab, lead, device=DEVICE)


def check_token_logprobs(backend, logits, targets, dtype=torch.float32, temperature=1.0):
    """Compare logp, entropy and d/dlogits with the reference; return the kernel's gradient."""
    x, x_ref = twin(logits, dtype)
    logp, entropy = lk.token_logprobs(
        x, targets, temperature=temperature, return_entropy=True, backend=backend
    )
    logp_ref, entropy_ref = ref.token_logprobs(x_ref, targets, temperature)
    assert logp.shape == entropy.shape == targets.shape
    assert_output(logp, logp_ref, dtype)
    assert_output(entropy, entropy_ref, dtype)
    weights = torch.randn(2, *targets.shape, dtype=torch.float64, device=DEVICE)
    backprop((logp, entropy), weights)
    backprop((logp_ref, entropy_ref), weights)
    assert_grad(x.grad, x_ref.grad)
    return x.grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead, vocab, temperature", LOGIT_CASES)
def test_token_logprobs(backend, dtype, lead, vocab, temperature):
    logits = 3 * torch.randn(*lead, vocab)
    check_token_logprobs(backend, logits, random_targets(lead, vocab), dtype, temperature)


@pytest.mark.parametrize("backend", BACKENDS)
def test_token_logprobs_without_entropy(backend):
    """The default return is the bare logp tensor, differentiable on its own."""
    logits, targets = torch.randn(19, 300), random_targets((19,), 300)
    x, x_ref = twin(logits)
    logp = lk.token_logprobs(x, targets, backend=backend)
    assert isinstance(logp, torch.Tensor)
    logp_ref, _ = ref.token_logprobs(x_ref, targets)
    assert_output(logp, logp_ref)
    weights = torch.randn(1, 19, dtype=torch.float64, device=DEVICE)
    backprop((logp,), weights)
    backprop((logp_ref,), weights)
    assert_grad(x.grad, x_ref.grad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern", ["scattered", "leading-span"])
def test_token_logprobs_neg_inf_logits(backend, dtype, pattern):
    """Masked-out vocabulary entries (-inf) contribute nothing: finite entropy, zero gradient there.

    The leading span makes whole vocabulary tiles -inf, where online softmax can compute -inf - -inf.
    """
    lead, vocab = (3, 7), 9000
    targets = torch.randint(5000, vocab, lead, device=DEVICE)
    logits = torch.randn(*lead, vocab)
    if pattern == "scattered":
        banned = torch.rand(*lead, vocab) < 0.4
        banned.scatter_(-1, targets.cpu().unsqueeze(-1), False)
    else:
        banned = torch.arange(vocab).expand(*lead, vocab) < 5000
    logits[banned] = -math.inf
    grad = check_token_logprobs(backend, logits, targets, dtype, temperature=0.7)
    assert torch.all(grad[banned.to(DEVICE)] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vocab, temperature", [(300, 1.0), (9000, 0.7)])
def test_token_logprobs_huge_logits(backend, dtype, vocab, temperature):
    """Logits of magnitude 1e4 must not overflow the fp32 log-sum-exp."""
    lead = (11,)
    check_token_logprobs(backend, 1e4 * torch.randn(*lead, vocab), random_targets(lead, vocab),
                         dtype, temperature)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["sliced-vocab", "int32-targets"])
def test_token_logprobs_input_layouts(backend, layout):
    """Padded-vocabulary slices (non-contiguous) and int32 targets are ordinary inputs."""
    vocab = 250
    padded = torch.randn(9, vocab + 6, device=DEVICE)
    targets = random_targets((9,), vocab)
    if layout == "int32-targets":
        targets = targets.int()
    x, x_ref = padded[:, :vocab], padded[:, :vocab].double()
    logp, entropy = lk.token_logprobs(x, targets, return_entropy=True, backend=backend)
    logp_ref, entropy_ref = ref.token_logprobs(x_ref, targets)
    assert_output(logp, logp_ref)
    assert_output(entropy, entropy_ref)


def check_linear_token_logprobs(backend, lead, hidden_size, vocab, temperature, dtype, with_bias):
    hidden, hidden_ref = twin(torch.randn(*lead, hidden_size), dtype)
    weight, weight_ref = twin(2 * torch.randn(vocab, hidden_size) / hidden_size**0.5, dtype)
    bias, bias_ref = twin(0.5 * torch.randn(vocab), dtype) if with_bias else (None, None)
    targets = random_targets(lead, vocab)
    logp, entropy = lk.linear_token_logprobs(
        hidden, weight, targets, bias=bias, temperature=temperature, return_entropy=True,
        backend=backend,
    )
    logits_ref = ref.linear_logits(hidden_ref, weight_ref, bias_ref)
    logp_ref, entropy_ref = ref.token_logprobs(logits_ref, targets, temperature)
    assert logp.shape == entropy.shape == targets.shape
    assert_output(logp, logp_ref, dtype)
    assert_output(entropy, entropy_ref, dtype)
    weights = torch.randn(2, *lead, dtype=torch.float64, device=DEVICE)
    backprop((logp, entropy), weights)
    backprop((logp_ref, entropy_ref), weights)
    assert_grad(hidden.grad, hidden_ref.grad)
    assert_grad(weight.grad, weight_ref.grad)
    if with_bias:
        assert_grad(bias.grad, bias_ref.grad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead, hidden_size, vocab, temperature", LINEAR_CASES)
def test_linear_token_logprobs(backend, with_bias, dtype, lead, hidden_size, vocab, temperature):
    check_linear_token_logprobs(backend, lead, hidden_size, vocab, temperature, dtype, with_bias)


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_token_logprobs_without_entropy(backend):
    hidden, weight = torch.randn(10, 32, device=DEVICE), torch.randn(70, 32, device=DEVICE)
    targets = random_targets((10,), 70)
    logp = lk.linear_token_logprobs(hidden, weight, targets, backend=backend)
    assert isinstance(logp, torch.Tensor)
    assert_output(logp, ref.token_logprobs(ref.linear_logits(hidden, weight), targets)[0])


def test_large_vocab_torch():
    """A GPT-2-sized vocabulary, on the PyTorch path only (the interpreter would take minutes)."""
    vocab = 50257
    check_token_logprobs("torch", 3 * torch.randn(4, vocab), random_targets((4,), vocab))
    check_linear_token_logprobs("torch", (4,), 64, vocab, 1.0, torch.float32, with_bias=True)
