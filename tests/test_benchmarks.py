"""pytest-benchmark timings (run with `tox -e bench` or `pytest -m benchmark --benchmark-enable`).

In the default run timing is disabled and each benchmarked function runs once, as a smoke test.
"""

import time

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

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


def _best_of(*fns, repeat: int = 15) -> list[float]:
    """Shortest of ``repeat`` timings of each function (the least disturbed by other load), in seconds.

    The functions take turns, so a burst of load on a shared machine hits them alike.
    """
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


@pytest.mark.parametrize("n_classes,n_clusters", [(10, 10), (100, 100), (100, 1000)])
def test_bench_evaluate_1e6_vs_bound(benchmark, n_classes, n_clusters):
    """evaluate() on 10^6 labels against the bound: one bincount contingency plus the Hungarian matching.

    Records ``ratio_to_bound`` (evaluate / bound, both best-of-15 in this run) and, with timing enabled,
    ``sklearn_chain_over_evaluate``: scikit-learn's NMI, ARI, pair confusion and contingency + Hungarian
    called one after another. Nothing about absolute time is asserted.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix, pair_confusion_matrix

    rng = np.random.default_rng(0)
    y = rng.integers(0, n_classes, 1_000_000)
    p = np.where(rng.random(y.size) < 0.2, rng.integers(0, n_clusters, y.size), y % n_clusters)

    def bound():
        w = np.bincount(p * n_classes + y, minlength=n_clusters * n_classes).reshape(n_clusters, n_classes)
        return linear_sum_assignment(w, maximize=True)

    def sklearn_chain():
        normalized_mutual_info_score(y, p)
        adjusted_rand_score(y, p)
        pair_confusion_matrix(y, p)
        linear_sum_assignment(contingency_matrix(p, y), maximize=True)

    out = benchmark(metrics.evaluate, y, p)
    assert 0.5 < out["acc"] <= 1.0
    t_eval, t_bound = _best_of(lambda: metrics.evaluate(y, p), bound)
    benchmark.extra_info.update(bound_s=t_bound, evaluate_s=t_eval, ratio_to_bound=t_eval / t_bound)
    if not benchmark.disabled:  # a second each: only when timing is asked for
        benchmark.extra_info["sklearn_chain_over_evaluate"] = _best_of(sklearn_chain, repeat=2)[0] / t_eval


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


def _linear_multiply_adds(modules, rows: int) -> int:
    """Multiply-adds of one training pass (forward + backward) of every Linear layer over ``rows`` rows.

    Forward a*b per row; backward a*b for the weight gradient and a*b for the input gradient, except in a layer
    whose input needs no gradient (the first layer of each network, fed data).
    """
    total = 0
    for net in modules:
        layers = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        for i, layer in enumerate(layers):
            ab = layer.in_features * layer.out_features
            total += ab * (2 if i == 0 else 3) * rows
    return total


def test_bench_dec_autoencoder_epoch_vs_flop_bound(benchmark, load_real):
    """One DEC / JECL auto-encoder pre-training epoch on BDGP (concatenated views, d-500-500-2000-10 and back).

    The bound is a chain of square float32 matmuls with the epoch's multiply-adds, timed in the same run;
    ``ratio_to_flop_bound`` = epoch / bound goes to ``extra_info`` (nothing asserted about time).
    """
    from mmclust.methods.base import select_view, view_means
    from mmclust.methods.dec import build_autoencoder
    from mmclust.methods.nets import as_device_tensor, pretrain_autoencoders, xavier_init_
    from mmclust.runtime import torch_generator

    ds = load_real("bdgp")
    x = as_device_tensor(select_view(ds, "concat", view_means(ds)), "cpu")
    enc, dec = build_autoencoder(x.shape[1])
    xavier_init_(enc, torch_generator(0))
    xavier_init_(dec, torch_generator(1))
    gen = torch_generator(0)

    def epoch():
        return pretrain_autoencoders([(enc, dec, x, "")], 1, 1e-3, 256, gen, "cpu", corruption=0.2)

    history = benchmark.pedantic(epoch, rounds=3, iterations=1)
    assert np.isfinite(history[0]["_reconstruction"])
    size = 512
    macs = _linear_multiply_adds([enc, dec], x.shape[0])
    a = torch.randn(size, size)
    n_mm = max(1, round(macs / size**3))

    def bound():
        for _ in range(n_mm):
            torch.mm(a, a)

    t_epoch, t_bound = _best_of(epoch, bound, repeat=3)
    benchmark.extra_info.update(multiply_adds=macs, epoch_s=t_epoch, bound_s=t_bound, ratio_to_flop_bound=t_epoch / t_bound,
                                torch_threads=torch.get_num_threads())
