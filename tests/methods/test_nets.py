"""Shared network pieces: the minibatch layer's closeness features and their hand-written gradient."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmclust.methods.nets import MinibatchDiscrimination, l1_closeness, masked_input


def _reference(m):
    """Salimans et al.'s minibatch features, written as autograd sees them: exp(-L1 distance) summed over the others."""
    return torch.exp(-torch.cdist(m, m, p=1.0)).sum(2) - 1.0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), kernels=st.integers(1, 4), n=st.integers(1, 12), dim=st.integers(1, 5))
def test_l1_closeness_values_and_gradient_equal_autograd_of_the_formula(seed, kernels, n, dim):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(kernels, n, dim, generator=g, dtype=torch.float64)
    upstream = torch.randn(kernels, n, generator=g, dtype=torch.float64)
    _assert_is_the_formula(m, upstream, *_closeness_and_gradient(m, upstream))


def test_l1_closeness_passes_gradcheck():
    m = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(l1_closeness, (m,))


def test_minibatch_layer_gradient_through_a_non_contiguous_upstream():
    """In the layer the closeness features arrive transposed inside a ``cat``: the gradient is the formula's."""
    layer = MinibatchDiscrimination(5, n_kernels=3, kernel_dim=2).double()
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (got,) = torch.autograd.grad((layer(x) * w).sum(), x)
    m = (x @ layer.T).view(-1, 3, 2).transpose(0, 1)
    (want,) = torch.autograd.grad((torch.cat([x, _reference(m).T], 1) * w).sum(), x)
    torch.testing.assert_close(got, want)
    assert layer(x).shape == (7, 5 + 3)


@pytest.mark.parametrize("n", [1, 2])
def test_l1_closeness_of_tiny_batches(n):
    m = torch.zeros(2, n, 3, requires_grad=True)
    out = l1_closeness(m)
    torch.testing.assert_close(out, torch.full((2, n), float(n - 1)))  # identical rows: exp(0) for each other row
    (grad,) = torch.autograd.grad(out.sum(), m)
    assert torch.equal(grad, torch.zeros_like(m))  # sign(0) = 0: no direction to move identical rows apart


@pytest.fixture(autouse=True)
def _compiling_allowed(monkeypatch):
    """The fused-kernel tests below are about the compiled path: a session run with MMCLUST_COMPILE=0 must not fail
    them (each test that wants cdist sets the variable itself)."""
    monkeypatch.delenv("MMCLUST_COMPILE", raising=False)


def _assert_is_the_formula(m, upstream, values, grad):
    """``values`` and ``grad`` (of ``(values * upstream).sum()``) equal autograd of the cdist formula at ``m``."""
    ref = m.clone().requires_grad_()
    want = _reference(ref)
    (grad_want,) = torch.autograd.grad((want * upstream).sum(), ref)
    torch.testing.assert_close(values, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_want, rtol=1e-10, atol=1e-12)


def _closeness_and_gradient(m, upstream):
    m = m.detach().clone().requires_grad_()
    out = l1_closeness(m)
    (grad,) = torch.autograd.grad((out * upstream).sum(), m)
    return out, grad


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), kernels=st.integers(2, 4), n=st.integers(32, 70), dim=st.integers(2, 5))
def test_fused_closeness_kernels_equal_the_formula(cpp_compiler, seed, kernels, n, dim):
    """Batches of FUSED_MIN_ROWS rows or more go through the compiled kernels: the formula's values and gradient."""
    from mmclust.methods import nets

    g = torch.Generator().manual_seed(seed)
    m = torch.randn(kernels, n, dim, generator=g, dtype=torch.float64)
    upstream = torch.randn(kernels, n, generator=g, dtype=torch.float64)
    assert n >= nets.FUSED_MIN_ROWS and nets.fused_closeness() is not None
    got, grad_got = _closeness_and_gradient(m, upstream)
    assert nets._FUSED.get("kernels") is not None, "the compiled kernels failed and cdist stood in"
    _assert_is_the_formula(m, upstream, got, grad_got)


def test_fused_closeness_in_float32_agrees_with_cdist_and_can_be_turned_off(monkeypatch, cpp_compiler):
    """The training dtype: fused kernels and cdist agree to float32 rounding; MMCLUST_COMPILE=0 takes cdist."""
    from mmclust.methods import nets

    g = torch.Generator().manual_seed(3)
    m, upstream = torch.randn(16, 40, 8, generator=g), torch.randn(16, 40, generator=g)
    fused = _closeness_and_gradient(m, upstream)
    assert nets._FUSED.get("kernels") is not None
    monkeypatch.setenv("MMCLUST_COMPILE", "0")
    assert nets.fused_closeness() is None
    plain = _closeness_and_gradient(m, upstream)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.equal(fused[1], plain[1])  # two computations (sums in another order), not one path twice


@pytest.mark.parametrize("broken_part", ["both", "backward"])
def test_closeness_falls_back_to_cdist_when_a_kernel_breaks(monkeypatch, request, broken_part):
    """A machine without a working compiler (both kernels fail), or a backward kernel that breaks after a working
    forward: one warning, the formula's values and gradient, no crash, and no retry at every batch."""
    from mmclust.methods import nets

    def broken(*args):
        raise RuntimeError("no C++ compiler")

    if broken_part == "backward":  # the forward is the real compiled one
        request.getfixturevalue("cpp_compiler")
    forward = broken if broken_part == "both" else nets.fused_closeness()[0]
    monkeypatch.setitem(nets._FUSED, "kernels", (forward, broken))
    g = torch.Generator().manual_seed(4)
    m, upstream = torch.randn(3, 33, 4, generator=g, dtype=torch.float64), torch.randn(3, 33, generator=g, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        values, grad = _closeness_and_gradient(m, upstream)
    assert nets._FUSED["kernels"] is None
    _assert_is_the_formula(m, upstream, values, grad)


def test_compiled_kernels_are_not_called_inside_a_tensor_mode(monkeypatch):
    """Under FlopCounterMode (the benchmarks' multiply-add oracle) the layer takes cdist: measured, one compiled call
    there left torch running the kernels as slow eager Python for the rest of the process."""
    from torch.utils.flop_counter import FlopCounterMode

    from mmclust.methods import nets

    calls = []
    monkeypatch.setitem(nets._FUSED, "kernels", (lambda *a: calls.append("forward") or nets._closeness_forward(*a),
                                                 lambda *a: calls.append("backward") or nets._closeness_backward(*a)))
    g = torch.Generator().manual_seed(6)
    m, upstream = torch.randn(2, 40, 3, generator=g, dtype=torch.float64), torch.randn(2, 40, generator=g, dtype=torch.float64)
    with FlopCounterMode(display=False):
        counted = _closeness_and_gradient(m, upstream)
    assert calls == []
    plain = _closeness_and_gradient(m, upstream)
    assert calls == ["forward", "backward"]
    for a, b in zip(counted, plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_fused_kernels_state_says_which_path_ran(monkeypatch):
    """A run's record names the path its minibatch layers took (the two differ at float32 rounding)."""
    from mmclust.methods import nets

    monkeypatch.delitem(nets._FUSED, "kernels", raising=False)
    assert nets.fused_kernels_state() == "unused"
    monkeypatch.setenv("MMCLUST_COMPILE", "off")
    assert nets.fused_kernels_state() == "off"
    monkeypatch.delenv("MMCLUST_COMPILE")
    monkeypatch.setitem(nets._FUSED, "kernels", (len, len))
    assert nets.fused_kernels_state() == "on"
    monkeypatch.setitem(nets._FUSED, "kernels", None)
    assert nets.fused_kernels_state() == "failed"


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.999)])
def test_fused_adam_takes_adams_steps(betas):
    """The fused optimiser follows torch's reference Adam (per-tensor loop) with the given rate and betas."""
    from mmclust.methods.nets import fused_adam

    g = torch.Generator().manual_seed(0)
    start = [torch.randn(17, 5, generator=g), torch.randn(5, generator=g)]
    grads = [[torch.randn(p.shape, generator=g) for p in start] for _ in range(6)]
    a = [p.clone().requires_grad_() for p in start]
    b = [p.clone().requires_grad_() for p in start]
    fused, loop = fused_adam(a, lr=0.01, betas=betas), torch.optim.Adam(b, lr=0.01, betas=betas, foreach=False)
    for step in grads:
        for p, q, grad in zip(a, b, step):
            p.grad, q.grad = grad.clone(), grad.clone()
        fused.step()
        loop.step()
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(a[0], start[0])  # it moved


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("rate", [1e-7, 0.2, 1 / 3, 0.9])
def test_masked_input_is_the_dropout_expression_bit_for_bit(dtype, rate):
    """``inp * (u >= rate) / (1 - rate)`` with the same uniforms, compared as bits (signed zeros, NaN, infinities and
    denormals included), in the input's dtype; the input itself is left alone."""
    g = torch.Generator().manual_seed(3)
    inp = torch.randn(64, 37, generator=g).to(dtype)
    special = torch.tensor([-0.0, 0.0, float("nan"), float("inf"), -float("inf"), 1e-40, -1e-40], dtype=torch.float64)
    inp[:, :7] = special.to(dtype)
    before = inp.clone()
    want = inp * (torch.rand(inp.shape, generator=torch.Generator().manual_seed(9)) >= rate) / (1.0 - rate)
    got = masked_input(inp, rate, torch.Generator().manual_seed(9))
    assert got.dtype == dtype and got.shape == inp.shape
    bits = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16}[dtype]
    assert torch.equal(got.view(bits), want.view(bits))
    assert torch.equal(inp.view(bits), before.view(bits))
    kept = (got != 0)[:, 7:]
    assert 0 < kept.float().mean() and (rate > 0.5 or kept.float().mean() > 0.4)  # the mask is not all or nothing
