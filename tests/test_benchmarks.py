"""pytest-benchmark timings (run with `tox -e bench` or `pytest -m benchmark --benchmark-enable`).

In the default run timing is disabled and each benchmarked function runs once, as a smoke test.
"""

import numpy as np
import pytest
import torch

from mmclust import metrics, ops

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def million_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 1_000_000)
    p = np.where(rng.random(y.size) < 0.2, rng.integers(0, 10, y.size), y)
    return y, p


@pytest.mark.parametrize("name", ["acc", "nmi", "ari", "f_score", "purity"])
def test_bench_metric_1e6(benchmark, million_labels, name):
    y, p = million_labels
    value = benchmark(getattr(metrics, name), y, p)
    assert 0.5 < value <= 1.0


@pytest.fixture(scope="module")
def assignments():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(100_000, 10, generator=g)
    c = torch.randn(10, 10, generator=g)
    return z, c, ops.student_t_assignment(z, c), torch.softmax(torch.randn(100_000, 10, generator=g), 1)


def test_bench_student_t(benchmark, assignments):
    z, c, _, _ = assignments
    q = benchmark(ops.student_t_assignment, z, c)
    assert q.shape == (100_000, 10)


def test_bench_target_distribution(benchmark, assignments):
    q = assignments[2]
    assert benchmark(ops.target_distribution, q).shape == q.shape


def test_bench_kl_jsd(benchmark, assignments):
    _, _, q, r = assignments
    out = benchmark(lambda: (ops.kl_divergence(q, r), ops.js_divergence(q, r)))
    assert all(torch.isfinite(v) for v in out)


def test_bench_align_and_sinkhorn(benchmark, assignments):
    _, _, q, r = assignments
    perm, s = benchmark(lambda: (ops.align_clusters(q, r), ops.sinkhorn(q.log(), n_iter=3)))
    assert sorted(perm.tolist()) == list(range(10)) and s.shape == q.shape


def test_bench_iic(benchmark, assignments):
    _, _, q, r = assignments
    assert torch.isfinite(benchmark(ops.iic_mutual_information, q, r))


def test_bench_cigit_c_epoch_bdgp(benchmark, load_real):
    """One CIGIT-C training epoch on BDGP at 50 % missing (plus its k-means init; no pre-training)."""
    from mmclust.data import incomplete
    from mmclust.methods.cigit_c import CIGITC

    ds = incomplete(load_real("bdgp"), 0.5, 0)
    model = CIGITC(max_epochs=1, pretrain_epochs=0, gan_pretrain_epochs=0, kmeans_n_init=1, random_state=0, device="cpu")
    fitted = benchmark.pedantic(model.fit, args=(ds,), rounds=3, iterations=1)
    assert len(fitted.history_) == 1


def test_bench_jecl_epoch_10k(benchmark):
    """One JECL epoch on 10,000 pairs of (2048, 300) features (plus its k-means init; no pre-training)."""
    from mmclust.data import MultiModalDataset
    from mmclust.methods.jecl import JECL

    rng = np.random.default_rng(0)
    labels = np.arange(10_000) % 10
    centres = rng.normal(size=(10, 2048 + 300)).astype(np.float32)
    x = centres[labels] + rng.normal(size=(10_000, 2048 + 300)).astype(np.float32)
    ds = MultiModalDataset({"image": x[:, :2048], "text": x[:, 2048:]}, labels, name="bench10k")
    model = JECL(pretrain_epochs=0, max_epochs=1, kmeans_n_init=1, update_interval=10_000, random_state=0, device="cpu")
    fitted = benchmark.pedantic(model.fit, args=(ds,), rounds=2, iterations=1)
    assert fitted.n_iter_ == 40  # 10,000 / 256 batches
