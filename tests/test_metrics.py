"""Metrics against independent computations: brute force, sklearn, hand-computed values."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from mmclust import metrics

labels = st.integers(1, 40).flatmap(
    lambda n: st.tuples(st.lists(st.integers(0, 3), min_size=n, max_size=n), st.lists(st.integers(0, 4), min_size=n, max_size=n))
)


def brute_force_acc(y, p):
    """Try every injective map from clusters to classes (a small pure-Python oracle)."""
    classes, clusters = sorted(set(y)), sorted(set(p))
    slots = classes + [None] * max(0, len(clusters) - len(classes))
    best = 0
    for perm in itertools.permutations(slots, len(clusters)):
        mapping = dict(zip(clusters, perm))
        best = max(best, sum(1 for a, b in zip(y, p) if mapping[b] == a))
    return best / len(y)


def pair_f(y, p):
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(y)), 2):
        same_t, same_p = y[i] == y[j], p[i] == p[j]
        tp += same_t and same_p
        fp += same_p and not same_t
        fn += same_t and not same_p
    if tp == 0:
        return 1.0 if fp == 0 and fn == 0 else 0.0
    pr, rc = tp / (tp + fp), tp / (tp + fn)
    return 2 * pr * rc / (pr + rc)


@given(labels)
def test_acc_equals_brute_force(yp):
    y, p = yp
    assert metrics.acc(y, p) == pytest.approx(brute_force_acc(y, p))


@given(labels)
def test_against_sklearn_and_hand_computed(yp):
    y, p = yp
    assert metrics.nmi(y, p) == pytest.approx(normalized_mutual_info_score(y, p))
    assert metrics.nmi(y, p, "geometric") == pytest.approx(normalized_mutual_info_score(y, p, average_method="geometric"))
    assert metrics.ari(y, p) == pytest.approx(adjusted_rand_score(y, p))
    assert metrics.f_score(y, p) == pytest.approx(pair_f(y, p))
    purity = sum(max(sum(1 for a, b in zip(y, p) if b == c and a == t) for t in set(y)) for c in set(p)) / len(y)
    assert metrics.purity(y, p) == pytest.approx(purity)


@given(labels, st.randoms(use_true_random=False))
def test_invariant_to_relabelling_clusters(yp, random):
    y, p = yp
    ids = sorted(set(p))
    new = ids[:]
    random.shuffle(new)
    relabel = dict(zip(ids, [v * 7 + 100 for v in new]))  # arbitrary, non-contiguous ids
    q = [relabel[v] for v in p]
    a, b = metrics.evaluate(y, p), metrics.evaluate(y, q)
    for key in metrics.METRICS:
        assert a[key] == pytest.approx(b[key])


def test_hand_computed_example():
    y = [0, 0, 0, 1, 1, 1]
    p = [1, 1, 0, 0, 0, 0]
    assert metrics.acc(y, p) == pytest.approx(5 / 6)
    assert metrics.purity(y, p) == pytest.approx(5 / 6)
    # pairs: together in truth 6, in prediction 1 + 6 = 7, in both 1 + 3 = 4 -> P = 4/7, R = 4/6
    assert metrics.f_score(y, p) == pytest.approx(2 * (4 / 7) * (4 / 6) / (4 / 7 + 4 / 6))
    assert metrics.evaluate(y, y) == {"acc": 1.0, "nmi": 1.0, "ari": 1.0, "f_score": 1.0, "purity": 1.0}


def test_more_clusters_than_classes_pads():
    y = [0, 0, 1, 1]
    p = [0, 1, 2, 3]
    assert metrics.acc(y, p) == 0.5
    assert metrics.purity(y, p) == 1.0


@pytest.mark.parametrize("y,p,msg", [
    ([0, 1], [0], "differ in length"),
    ([], [], "empty"),
    ([0.5, 1.0], [0, 1], "integer"),
    ([[0, 1]], [[0, 1]], "1-d"),
])
def test_bad_input(y, p, msg):
    with pytest.raises(ValueError, match=msg):
        metrics.evaluate(y, p)


def test_million_labels_fast():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 20, 1_000_000)
    p = (y + (rng.random(1_000_000) < 0.1) * rng.integers(0, 20, 1_000_000)) % 20
    import time

    t = time.perf_counter()
    out = metrics.evaluate(y, p)
    assert time.perf_counter() - t < 20  # vectorised; a per-sample Python loop would take minutes
    assert 0.85 < out["acc"] < 0.95
