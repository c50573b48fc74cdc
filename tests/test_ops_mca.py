"""MCA's shared ops: neighbour consistency, InfoNCE as eqs. (2)-(3) print it, soft prototypes, chunked k-NN."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mmclust import ops


def _rows(seed, n, k):
    return torch.softmax(torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3, 1)


@given(st.integers(0, 10_000))
def test_neighbour_consistency_nonnegative_and_zero_on_identical_one_hot(seed):
    q, r = _rows(seed, 7, 4), _rows(seed + 1, 7, 4)
    assert (ops.neighbour_consistency(q, r, reduction="none") >= 0).all()
    one_hot = torch.eye(4, dtype=torch.float64)[torch.arange(7) % 4]
    assert ops.neighbour_consistency(one_hot, one_hot).item() == 0.0
    expected = -torch.log((q * r).sum(1)).mean()
    assert ops.neighbour_consistency(q, r).item() == pytest.approx(expected.item(), rel=1e-12)


def test_neighbour_consistency_finite_where_rows_share_no_mass():
    a, b = torch.tensor([[1.0, 0.0]], requires_grad=True), torch.tensor([[0.0, 1.0]])
    loss = ops.neighbour_consistency(a, b)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 80 and torch.isfinite(a.grad).all()
    # closer rows cost less: the loss falls as the neighbour moves toward the sample's cluster
    near = ops.neighbour_consistency(torch.tensor([[0.9, 0.1]]), torch.tensor([[0.8, 0.2]]))
    far = ops.neighbour_consistency(torch.tensor([[0.9, 0.1]]), torch.tensor([[0.2, 0.8]]))
    assert near < far


def _info_nce_brute(logits, pos):
    out = []
    for i in range(len(logits)):
        j = int(pos[i])
        den = sum(math.exp(logits[i][l]) for l in range(len(logits[i])) if l != j)
        out.append(-math.log(math.exp(logits[i][j]) / den))
    return out


@given(st.integers(0, 10_000), st.integers(2, 6))
def test_info_nce_equals_brute_force_and_ignores_row_shifts(seed, m):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(5, m, generator=g, dtype=torch.float64) * 4
    pos = torch.randint(m, (5,), generator=g)
    got = ops.info_nce(logits, pos, reduction="none")
    np.testing.assert_allclose(got.numpy(), _info_nce_brute(logits.tolist(), pos.tolist()), rtol=1e-10, atol=1e-12)
    shift = torch.randn(5, 1, generator=g, dtype=torch.float64) * 10
    np.testing.assert_allclose(ops.info_nce(logits + shift, pos, reduction="none").numpy(), got.numpy(), atol=1e-10)
    assert ops.info_nce(logits, pos).item() == pytest.approx(got.mean().item(), rel=1e-12)


def test_info_nce_rewards_a_higher_positive_and_rejects_one_column():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    assert ops.info_nce(logits, torch.tensor([0])) < ops.info_nce(logits, torch.tensor([1]))
    with pytest.raises(ValueError, match="2 columns"):
        ops.info_nce(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))


@given(st.integers(0, 10_000))
def test_soft_prototypes_class_means_and_column_scaling(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    labels = torch.arange(12) % 4
    one_hot = torch.eye(4, dtype=torch.float64)[labels]
    means = torch.stack([x[labels == c].mean(0) for c in range(4)])
    np.testing.assert_allclose(ops.soft_prototypes(one_hot, x).numpy(), means.numpy(), rtol=1e-12, atol=1e-12)
    q = _rows(seed, 12, 4)
    scale = torch.rand(4, generator=g, dtype=torch.float64) * 5 + 0.1
    np.testing.assert_allclose(ops.soft_prototypes(q * scale, x).numpy(), ops.soft_prototypes(q, x).numpy(), rtol=1e-10)
    empty = one_hot.clone()
    empty[:, 3] = 0
    assert torch.isfinite(ops.soft_prototypes(empty, x)).all()


def _knn_brute(a, b, k, exclude_self=False):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    sims = a @ b.T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


@given(st.integers(0, 10_000), st.integers(1, 40), st.integers(1, 5))
def test_topk_neighbours_equals_brute_force_for_any_chunk(seed, chunk, k):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(23, 6)), rng.normal(size=(17, 6))
    got = ops.topk_neighbours(torch.as_tensor(a), torch.as_tensor(b), k, chunk_size=chunk).numpy()
    np.testing.assert_array_equal(got, _knn_brute(a, b, k))
    got_self = ops.topk_neighbours(torch.as_tensor(a), torch.as_tensor(a), k, chunk_size=chunk, exclude_self=True).numpy()
    np.testing.assert_array_equal(got_self, _knn_brute(a, a, k, exclude_self=True))
    assert not (got_self == np.arange(23)[:, None]).any()


def test_topk_neighbours_rejects_impossible_k():
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match="k=4"):
        ops.topk_neighbours(a, a, 4, exclude_self=True)
