"""Bad inputs fail early with a ValueError naming the argument; backend selection rules."""
import pytest
import torch
from helpers import BACKENDS, DEVICE

import libra_kernels as lk

N, V, H, B, T = 4, 11, 8, 2, 3


def rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=DEVICE, dtype=dtype)


def ids(*shape):
    return torch.randint(0, V, shape, device=DEVICE)


def out_of_range(value):
    targets = ids(N)
    targets[1] = value
    return targets


def grpo_args(**overrides):
    args = dict(logp=rand(B, T), old_logp=rand(B, T), advantages=rand(B),
                mask=torch.ones(B, T, dtype=torch.bool, device=DEVICE))
    return {**args, **overrides}


def linear_grpo_args(**overrides):
    args = dict(hidden=rand(B, T, H), weight=rand(V, H), targets=ids(B, T), old_logp=rand(B, T),
                advantages=rand(B), mask=torch.ones(B, T, dtype=torch.bool, device=DEVICE))
    return {**args, **overrides}


def call_linear_grpo(args, backend, **options):
    positional = [args.pop(k) for k in ("hidden", "weight", "targets", "old_logp", "advantages", "mask")]
    return lk.linear_grpo_loss(*positional, backend=backend, **args, **options)


def call_grpo(args, backend, **options):
    positional = [args.pop(k) for k in ("logp", "old_logp", "advantages", "mask")]
    return lk.grpo_loss(*positional, backend=backend, **args, **options)


# name -> (call taking the backend, regex the message must match)
BAD_INPUTS = {
    "targets-shape": (lambda b: lk.token_logprobs(rand(N, V), ids(N + 1), backend=b), "targets"),
    "float-targets": (lambda b: lk.token_logprobs(rand(N, V), rand(N), backend=b), "targets"),
    "negative-target": (lambda b: lk.token_logprobs(rand(N, V), out_of_range(-1), backend=b), "targets"),
    "target-equals-V": (lambda b: lk.token_logprobs(rand(N, V), out_of_range(V), backend=b), "targets"),
    # A meta tensor stands in for a second device on CPU-only machines; it holds logits, not targets,
    # because targets' values (range check) cannot be read on meta.
    "device-mismatch": (lambda b: lk.token_logprobs(rand(N, V).to("meta"), ids(N), backend=b),
                        "targets|logits"),
    "linear-dtype": (lambda b: lk.linear_token_logprobs(
        rand(N, H), rand(V, H, dtype=torch.bfloat16), ids(N), backend=b), "hidden|weight"),
    "linear-hidden-size": (lambda b: lk.linear_token_logprobs(
        rand(N, H), rand(V, H + 1), ids(N), backend=b), "hidden|weight"),
    "linear-bias-shape": (lambda b: lk.linear_token_logprobs(
        rand(N, H), rand(V, H), ids(N), bias=rand(V + 1), backend=b), "bias"),
    "linear-targets-shape": (lambda b: lk.linear_token_logprobs(
        rand(N, H), rand(V, H), ids(N - 1), backend=b), "targets"),
    "linear-target-equals-V": (lambda b: lk.linear_token_logprobs(
        rand(N, H), rand(V, H), out_of_range(V), backend=b), "targets"),
    "kl-shape": (lambda b: lk.kl_penalty(rand(B, T), rand(B, T + 1), backend=b), "logp"),
    "grpo-old-logp-shape": (lambda b: call_grpo(grpo_args(old_logp=rand(B, T + 1)), b), "old_logp"),
    "grpo-advantages-shape": (lambda b: call_grpo(grpo_args(advantages=rand(B + 1)), b), "advantages"),
    "grpo-mask-shape": (lambda b: call_grpo(grpo_args(mask=torch.ones(B, T + 1, device=DEVICE)), b),
                        "mask"),
    "grpo-ref-shape": (lambda b: call_grpo(grpo_args(ref_logp=rand(B, T + 1)), b, kl_coef=0.1),
                       "ref_logp"),
    "grpo-kl-without-ref": (lambda b: call_grpo(grpo_args(), b, kl_coef=0.1), "ref_logp"),
    "linear-grpo-targets-shape": (lambda b: call_linear_grpo(
        linear_grpo_args(targets=ids(B, T + 1)), b), "targets"),
    "linear-grpo-old-logp-shape": (lambda b: call_linear_grpo(
        linear_grpo_args(old_logp=rand(B + 1, T)), b), "old_logp"),
    "linear-grpo-dtype": (lambda b: call_linear_grpo(
        linear_grpo_args(weight=rand(V, H, dtype=torch.bfloat16)), b), "hidden|weight"),
}

UNKNOWN_STRINGS = {
    "kl-kind": lambda b: lk.kl_penalty(rand(N), rand(N), kind="k4", backend=b),
    "grpo-agg": lambda b: call_grpo(grpo_args(), b, agg="seq-sum"),
    "grpo-kl-kind": lambda b: call_grpo(grpo_args(ref_logp=rand(B, T)), b, kl_coef=0.1, kl_kind="kl"),
    "linear-grpo-agg": lambda b: call_linear_grpo(linear_grpo_args(), b, agg="mean"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call, argument", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_names_argument(backend, call, argument):
    with pytest.raises(ValueError, match=argument):
        call(backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call", UNKNOWN_STRINGS.values(), ids=UNKNOWN_STRINGS.keys())
def test_unknown_option_string(backend, call):
    with pytest.raises(ValueError):
        call(backend)


def test_shape_error_names_the_shapes():
    with pytest.raises(ValueError, match="targets") as excinfo:
        lk.token_logprobs(rand(N, V), ids(N + 3))
    message = str(excinfo.value)
    assert "11" in message and "7" in message, message


# One valid call per backend-taking function; the first tensor of the result is compared.
GOOD_CALLS = {
    "token_logprobs": lambda b: lk.token_logprobs(rand(N, V), ids(N), backend=b),
    "linear_token_logprobs": lambda b: lk.linear_token_logprobs(rand(N, H), rand(V, H), ids(N), backend=b),
    "kl_penalty": lambda b: lk.kl_penalty(rand(N), rand(N), backend=b),
    "grpo_loss": lambda b: call_grpo(grpo_args(), b),
    "linear_grpo_loss": lambda b: call_linear_grpo(linear_grpo_args(), b),
}


def first_tensor(result):
    return result[0] if isinstance(result, tuple) else result


def run_seeded(call, backend):
    torch.manual_seed(1)
    return first_tensor(call(backend))


@pytest.mark.parametrize("call", GOOD_CALLS.values(), ids=GOOD_CALLS.keys())
def test_unknown_backend(call):
    with pytest.raises(ValueError):
        call("bogus")


@pytest.mark.parametrize("backend", [None, "auto"])
@pytest.mark.parametrize("call", GOOD_CALLS.values(), ids=GOOD_CALLS.keys())
def test_auto_backend(monkeypatch, call, backend):
    monkeypatch.delenv("LIBRA_KERNELS_BACKEND", raising=False)
    expected = run_seeded(call, "torch")
    torch.testing.assert_close(run_seeded(call, backend), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("call", GOOD_CALLS.values(), ids=GOOD_CALLS.keys())
def test_env_overrides_auto(monkeypatch, call):
    monkeypatch.setenv("LIBRA_KERNELS_BACKEND", "torch")
    expected = run_seeded(call, "torch")
    torch.testing.assert_close(run_seeded(call, None), expected, rtol=1e-5, atol=1e-6)


def test_env_is_read_but_explicit_backend_wins(monkeypatch):
    """A bogus override breaks auto selection (so it is read) yet leaves explicit choices alone."""
    monkeypatch.setenv("LIBRA_KERNELS_BACKEND", "bogus")
    run_seeded(GOOD_CALLS["token_logprobs"], "torch")
    with pytest.raises(ValueError):
        run_seeded(GOOD_CALLS["token_logprobs"], None)
