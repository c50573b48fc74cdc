"""Properties of the shared math (mmclust.ops), each checked on generated inputs."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mmclust import ops


def _assignments(seed, n, k, temperature=1.0, zeros=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64) / temperature, dim=1)
    if zeros:
        q[:, 0] = 0.0
        q = q / q.sum(1, keepdim=True)
    return q


shapes = st.tuples(st.integers(0, 10_000), st.integers(1, 40), st.integers(2, 8))


@given(shapes, st.floats(0.2, 5.0))
def test_student_t_rows_are_distributions(shape, alpha):
    seed, n, k = shape
    g = torch.Generator().manual_seed(seed)
    z, c = torch.randn(n, 5, generator=g) * 10, torch.randn(k, 5, generator=g)
    q = ops.student_t_assignment(z, c, alpha)
    assert q.shape == (n, k)
    assert torch.all(q >= 0)
    torch.testing.assert_close(q.sum(1), torch.ones(n))


def test_student_t_matches_dec_formula():
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    c = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    # hand-computed DEC eq. (1) with alpha = 1: kernel = 1 / (1 + d^2)
    k = torch.tensor([[1.0, 1 / 10], [1 / 26, 1 / 17]])
    torch.testing.assert_close(ops.student_t_assignment(z, c), k / k.sum(1, keepdim=True))
    with pytest.raises(ValueError, match="alpha"):
        ops.student_t_assignment(z, c, alpha=0)


@given(shapes)
def test_target_distribution_sums_to_one_and_sharpens(shape):
    seed, n, k = shape
    q = _assignments(seed, n, k)
    p = ops.target_distribution(q)
    torch.testing.assert_close(p.sum(1), torch.ones(n, dtype=q.dtype))
    # sharpening: with balanced frequencies the target is more confident than q (lower entropy)
    q_bal = _assignments(seed, n * k, k)
    q_bal = torch.cat([q_bal.roll(i, dims=1) for i in range(k)])  # exactly balanced columns
    p_bal = ops.target_distribution(q_bal)
    assert ops.entropy(p_bal, "none").le(ops.entropy(q_bal, "none") + 1e-12).all()


def test_target_distribution_hand_computed():
    q = torch.tensor([[0.8, 0.2], [0.4, 0.6]], dtype=torch.float64)
    f = q.sum(0)
    w = q**2 / f
    torch.testing.assert_close(ops.target_distribution(q), w / w.sum(1, keepdim=True))


@given(shapes, st.booleans())
def test_kl_nonnegative_and_zero_on_equal(shape, zeros):
    seed, n, k = shape
    p, q = _assignments(seed, n, k, zeros=zeros), _assignments(seed + 1, n, k)
    assert ops.kl_divergence(p, q, "none").ge(-1e-12).all()
    assert ops.kl_divergence(p, p).abs() < 1e-12


def test_kl_matches_torch():
    p, q = _assignments(0, 20, 4), _assignments(1, 20, 4)
    ref = torch.nn.functional.kl_div(q.log(), p, reduction="batchmean")
    torch.testing.assert_close(ops.kl_divergence(p, q), ref)


@given(shapes, st.booleans(), st.floats(0.05, 5.0))
def test_jsd_symmetric_bounded_finite(shape, zeros, temp):
    seed, n, k = shape
    p, q = _assignments(seed, n, k, temp, zeros=zeros), _assignments(seed + 7, n, k, temp)
    a, b = ops.js_divergence(p, q, "none"), ops.js_divergence(q, p, "none")
    torch.testing.assert_close(a, b)
    assert torch.isfinite(a).all()
    assert a.ge(0).all() and a.le(math.log(2) + 1e-9).all()
    assert ops.js_divergence(p, p, "none").abs().max() < 1e-12


def test_jsd_reaches_ln2_for_disjoint_supports():
    p = torch.tensor([[1.0, 0.0]])
    q = torch.tensor([[0.0, 1.0]])
    assert abs(ops.js_divergence(p, q).item() - math.log(2)) < 1e-6


@given(st.integers(0, 1000), st.integers(2, 8))
def test_cluster_size_regularizer_larger_when_cluster_empties(seed, k):
    n = 50 * k
    uniform = torch.full((n, k), 1.0 / k)
    assert ops.cluster_size_regularizer(uniform).abs() < 1e-6
    collapsed = torch.zeros(n, k)
    collapsed[:, 0] = 1
    assert abs(ops.cluster_size_regularizer(collapsed).item() - math.log(k)) < 1e-5
    q = _assignments(seed, n, k).float()
    emptied = q.clone()
    emptied[:, 1] = 0
    emptied = emptied / emptied.sum(1, keepdim=True)
    assert ops.cluster_size_regularizer(emptied) > ops.cluster_size_regularizer(q)


@given(st.integers(0, 1000), st.integers(2, 7))
def test_align_clusters_recovers_known_permutation_and_is_relabel_invariant(seed, k):
    q_a = _assignments(seed, 30 * k, k, temperature=0.3)
    rng = np.random.default_rng(seed)
    sigma = torch.as_tensor(rng.permutation(k))
    q_b = q_a[:, sigma]  # b is a with its clusters relabelled
    perm = ops.align_clusters(q_a, q_b)
    torch.testing.assert_close(q_b[:, perm], q_a)
    # relabel b again: the aligned result must not change
    tau = torch.as_tensor(rng.permutation(k))
    noisy_b = _assignments(seed + 3, 30 * k, k)
    aligned = noisy_b[:, ops.align_clusters(q_a, noisy_b)]
    relabelled = noisy_b[:, tau]
    torch.testing.assert_close(relabelled[:, ops.align_clusters(q_a, relabelled)], aligned)


def test_align_clusters_brute_force_small():
    q_a, q_b = _assignments(3, 12, 3), _assignments(4, 12, 3)
    overlap = (q_a.T @ q_b).numpy()
    best = max(itertools.permutations(range(3)), key=lambda p: sum(overlap[i, p[i]] for i in range(3)))
    assert ops.align_clusters(q_a, q_b).tolist() == list(best)


@given(st.integers(2, 10))
def test_iic_mi_perfect_and_independent(k):
    eye = torch.eye(k, dtype=torch.float64).repeat(7, 1)
    assert abs(ops.iic_mutual_information(eye, eye).item() - math.log(k)) < 1e-9
    uniform = torch.full((7 * k, k), 1.0 / k, dtype=torch.float64)
    assert abs(ops.iic_mutual_information(eye, uniform).item()) < 1e-9


@given(shapes, st.integers(3, 50))
def test_sinkhorn_balanced(shape, n_iter):
    seed, n, k = shape
    n = max(n, k) * 5
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, k, generator=g, dtype=torch.float64) * 2
    q = ops.sinkhorn(scores, n_iter=n_iter + 50, epsilon=0.5)
    torch.testing.assert_close(q.sum(1), torch.ones(n, dtype=q.dtype))
    torch.testing.assert_close(q.sum(0), torch.full((k,), n / k, dtype=q.dtype), atol=1e-3 * n, rtol=0)
    assert torch.isfinite(ops.sinkhorn(scores * 100, epsilon=0.01)).all()  # no overflow at small epsilon


def test_sinkhorn_rejects_bad_settings():
    with pytest.raises(ValueError, match="epsilon"):
        ops.sinkhorn(torch.zeros(4, 2), epsilon=0)
    with pytest.raises(ValueError, match="n_iter"):
        ops.sinkhorn(torch.zeros(4, 2), n_iter=0)


def test_entropy_values():
    assert abs(ops.entropy(torch.full((4,), 0.25)).item() - math.log(4)) < 1e-6
    assert ops.entropy(torch.tensor([[1.0, 0.0]])).item() == 0.0


@given(st.integers(0, 1000))
def test_gradients_finite_even_with_hard_zeros(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(16, 4, generator=g, requires_grad=True)
    c = torch.randn(3, 4, generator=g, requires_grad=True)
    q = ops.student_t_assignment(z, c)
    p = ops.target_distribution(q).detach()
    hard = torch.zeros(16, 3)
    hard[:, 0] = 1
    loss = (ops.kl_divergence(p, q) + ops.js_divergence(q, hard) + ops.cluster_size_regularizer(q)
            - ops.iic_mutual_information(q, q) + ops.entropy(q))
    loss.backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(c.grad).all()


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="shapes differ"):
        ops.kl_divergence(torch.ones(3, 2) / 2, torch.ones(3, 3) / 3)
    with pytest.raises(ValueError, match="reduction"):
        ops.kl_divergence(torch.ones(3, 2) / 2, torch.ones(3, 2) / 2, reduction="avg")
    with pytest.raises(ValueError, match="centers"):
        ops.student_t_assignment(torch.ones(3, 2), torch.ones(2, 3))


# -- DM2C: wasserstein_gap, l1_cycle --------------------------------------------------------------------------
_scores = st.tuples(st.integers(0, 10_000), st.integers(1, 30), st.integers(1, 30))


@given(_scores, st.floats(-100.0, 100.0))
def test_wasserstein_gap_antisymmetric_zero_and_shift_invariant(shape, shift):
    seed, n_real, n_fake = shape
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(n_real, generator=g, dtype=torch.float64)
    fake = torch.randn(n_fake, 1, generator=g, dtype=torch.float64) + 0.5
    gap = ops.wasserstein_gap(real, fake)
    assert abs(gap.item() - (real.mean() - fake.mean()).item()) < 1e-12
    assert abs(ops.wasserstein_gap(fake, real).item() + gap.item()) < 1e-12  # sign flips when swapped
    assert ops.wasserstein_gap(real, real.clone()).item() == 0.0  # equal inputs
    assert abs(ops.wasserstein_gap(real + shift, fake + shift).item() - gap.item()) < 1e-9  # common shift


def test_wasserstein_gap_value_and_empty():
    assert ops.wasserstein_gap(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0, 3.0])).item() == 1.0
    with pytest.raises(ValueError, match="both sides"):
        ops.wasserstein_gap(torch.zeros(0), torch.ones(3))


@given(st.integers(0, 10_000), st.integers(1, 20), st.integers(1, 8))
def test_l1_cycle_zero_iff_equal(seed, n, d):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    assert ops.l1_cycle(z, z.clone()).item() == 0.0
    other = z.clone()
    other[seed % n, seed % d] += 1e-3
    assert ops.l1_cycle(z, other).item() > 0.0
    per_row = ops.l1_cycle(z, other, reduction="none")
    assert per_row.shape == (n,) and (per_row >= 0).all()
    assert abs(ops.l1_cycle(z, other, reduction="sum").item() - per_row.sum().item()) < 1e-12


def test_l1_cycle_hand_computed():
    """G_AB(z) = 2z, G_BA = identity: the cycle of z is 2z, so the loss is mean_i sum_j |z_ij|."""
    z = torch.tensor([[1.0, -2.0], [0.5, 0.0], [-3.0, 1.0]])
    back = z * 2.0  # G_BA(G_AB(z)) with G_AB = 2 z, G_BA = id
    assert ops.l1_cycle(z, back).item() == pytest.approx((3.0 + 0.5 + 4.0) / 3)
    assert ops.l1_cycle(z, back, reduction="sum").item() == pytest.approx(7.5)
    with pytest.raises(ValueError, match="one shape"):
        ops.l1_cycle(z, z[:2])


# -- IIC joint and mutual information (DMIM eqs. 1-2), Gaussian KL (DMIM eq. 12) -------------------------
from hypothesis import settings  # noqa: E402  (kept with the tests that use it)


@given(shapes)
def test_iic_joint_symmetric_nonnegative_sums_to_one(shape):
    seed, n, k = shape
    p_a, p_b = _assignments(seed, n, k), _assignments(seed + 1, n, k, zeros=True)
    joint = ops.iic_joint(p_a, p_b)
    assert joint.shape == (k, k) and torch.all(joint >= 0)
    torch.testing.assert_close(joint, joint.T)
    torch.testing.assert_close(joint.sum(), torch.tensor(1.0, dtype=joint.dtype))
    torch.testing.assert_close(ops.iic_joint(p_b, p_a), joint)  # the heads are exchangeable
    # hand-computed: (1/n) sum_i p_a_i p_b_i^T, symmetrised
    outer = sum(torch.outer(p_a[i], p_b[i]) for i in range(n)) / n
    torch.testing.assert_close(joint, (outer + outer.T) / 2)


@given(shapes, st.floats(0.05, 3.0))
def test_iic_mi_between_zero_and_log_k(shape, temperature):
    seed, n, k = shape
    p_a, p_b = _assignments(seed, n, k, temperature), _assignments(seed + 7, n, k, temperature)
    mi = ops.iic_mutual_information(p_a, p_b).item()
    assert -1e-12 <= mi <= math.log(k) + 1e-12
    assert ops.iic_mutual_information(p_a, p_a).item() <= math.log(k) + 1e-12


def test_iic_mi_cyclic_shift_at_k4_is_ln2():
    # by hand: labels y uniform on 0..3, head b says y+1 mod 4. P has 1/4 at (i, i+1); symmetrised, 1/8 at
    # (i, i+1) and (i+1, i), marginals 1/4: I = 8 * 1/8 * ln((1/8) / (1/16)) = ln 2 (= ln(k/2) for k >= 3;
    # the unsymmetrised joint would give ln 4). The claim holds.
    eye = torch.eye(4, dtype=torch.float64).repeat(5, 1)
    shifted = eye.roll(1, dims=1)
    assert ops.iic_mutual_information(eye, shifted).item() == pytest.approx(math.log(2), abs=1e-12)
    assert ops.iic_mutual_information(eye, eye).item() == pytest.approx(math.log(4), abs=1e-12)


@given(st.integers(1, 5))
def test_iic_mi_pair_swap_is_ln_k(half):
    k = 2 * half
    eye = torch.eye(k, dtype=torch.float64).repeat(3, 1)
    swap = torch.arange(k).view(-1, 2).flip(1).reshape(-1)  # 0<->1, 2<->3, ...: a symmetric joint
    assert ops.iic_mutual_information(eye, eye[:, swap]).item() == pytest.approx(math.log(k), abs=1e-12)


@given(shapes)
def test_iic_mi_invariant_under_common_column_permutation(shape):
    seed, n, k = shape
    p_a, p_b = _assignments(seed, n, k), _assignments(seed + 3, n, k)
    perm = torch.as_tensor(np.random.default_rng(seed).permutation(k))
    torch.testing.assert_close(ops.iic_mutual_information(p_a[:, perm], p_b[:, perm]), ops.iic_mutual_information(p_a, p_b))


gauss = st.tuples(st.integers(0, 10_000), st.integers(1, 12), st.integers(1, 6))


@given(gauss)
def test_gaussian_kl_nonnegative_zero_at_standard_and_closed_form(shape):
    seed, n, d = shape
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, d, generator=g, dtype=torch.float64) * 2
    sigma = torch.exp(torch.randn(n, d, generator=g, dtype=torch.float64))
    kl = ops.gaussian_kl(mu, sigma, reduction="none")
    assert kl.shape == (n,) and torch.all(kl >= 0)
    # closed form, written out per dimension: log(1/sigma) + (sigma^2 + mu^2)/2 - 1/2
    expected = (torch.log(1 / sigma) + (sigma**2 + mu**2) / 2 - 0.5).sum(1)
    torch.testing.assert_close(kl, expected)
    torch.testing.assert_close(ops.gaussian_kl(mu, sigma), expected.mean())
    zero = ops.gaussian_kl(torch.zeros(n, d, dtype=torch.float64), torch.ones(n, d, dtype=torch.float64), "none")
    assert torch.equal(zero, torch.zeros(n, dtype=torch.float64))
    # torch.distributions agrees (an independent implementation)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, sigma), torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl, ref)


@settings(max_examples=5)
@given(st.integers(0, 1000))
def test_gaussian_kl_matches_monte_carlo_within_one_percent(seed):
    g = torch.Generator().manual_seed(seed)
    d = 3
    mu = 1.0 + torch.rand(d, generator=g, dtype=torch.float64)  # KL >= 1.5: a relative tolerance is meaningful
    sigma = 0.5 + torch.rand(d, generator=g, dtype=torch.float64)
    eps = torch.randn(400_000, d, generator=g, dtype=torch.float64)
    z = mu + sigma * eps  # eq. (11)
    log_p = (-0.5 * eps**2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(1)
    log_q = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(1)
    mc = (log_p - log_q).mean().item()  # E_eps log p(z|x)/q(z), eq. (12)
    assert mc == pytest.approx(ops.gaussian_kl(mu, sigma).item(), rel=0.01)


def test_gaussian_kl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        ops.gaussian_kl(torch.zeros(3, 2), torch.ones(3, 3))
