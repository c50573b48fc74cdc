"""Metrics against independent computations: brute force, sklearn, hand-computed values."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix, pair_confusion_matrix

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


# -- scikit-learn as the oracle, to 1e-12 -------------------------------------------------------------------
# Id sets of three kinds reach the three ways a table is built: small non-negative ids (one bincount, no
# remapping), small ids with negatives (a lookup table), ids far apart (np.unique).
id_sets = st.one_of(st.lists(st.integers(0, 9), min_size=1, max_size=7, unique=True),
                    st.lists(st.integers(-6, 6), min_size=1, max_size=7, unique=True),
                    st.lists(st.integers(-10**12, 10**12), min_size=1, max_size=7, unique=True))


@st.composite
def labelings(draw):
    """(y_true, y_pred): random, with unequal numbers of clusters and classes, or one cluster, or singletons."""
    n = draw(st.integers(1, 80))
    y = np.array(draw(st.lists(st.sampled_from(draw(id_sets)), min_size=n, max_size=n)), dtype=np.int64)
    kind = draw(st.sampled_from(["random", "one cluster", "singletons", "truth"]))
    if kind == "random":
        p = draw(st.lists(st.sampled_from(draw(id_sets)), min_size=n, max_size=n))
    elif kind == "one cluster":
        p = [draw(st.integers(-10**12, 10**12))] * n
    elif kind == "singletons":
        p = np.array(draw(st.permutations(range(n)))) * draw(st.sampled_from([1, 3, 10**9]))
    else:  # the truth relabelled: every metric is 1
        p = y * 5 - 7
    return y, np.asarray(p, dtype=np.int64)


def sklearn_acc(y, p):
    """DEC's ACC as the code before the one-table rewrite computed it: the square zero-padded table."""
    w = contingency_matrix(p, y)
    padded = np.zeros((max(w.shape),) * 2, dtype=np.int64)
    padded[: w.shape[0], : w.shape[1]] = w
    rows, cols = linear_sum_assignment(padded.max() - padded)
    return padded[rows, cols].sum() / len(y)


def sklearn_f(y, p):
    (_, fp), (fn, tp) = pair_confusion_matrix(y, p)
    if tp == 0:
        return 1.0 if fp == 0 and fn == 0 else 0.0
    pr, rc = tp / (tp + fp), tp / (tp + fn)
    return 2 * pr * rc / (pr + rc)


def sklearn_all(y, p) -> dict:
    out = {"acc": sklearn_acc(y, p), "ari": adjusted_rand_score(y, p), "f_score": sklearn_f(y, p),
           "purity": contingency_matrix(p, y).max(axis=1).sum() / len(y)}
    for average in metrics.NMI_AVERAGES:
        out[f"nmi_{average}"] = normalized_mutual_info_score(y, p, average_method=average)
    return out


def assert_close(got: dict, want: dict):
    for key in want:
        assert abs(got[key] - want[key]) <= 1e-12, (key, got[key], want[key])


@given(labelings())
def test_every_metric_equals_sklearn(yp):
    y, p = yp
    want = sklearn_all(y, p)
    got = {"acc": metrics.acc(y, p), "ari": metrics.ari(y, p), "f_score": metrics.f_score(y, p),
           "purity": metrics.purity(y, p), **{f"nmi_{a}": metrics.nmi(y, p, a) for a in metrics.NMI_AVERAGES}}
    assert_close(got, want)


@given(labelings(), st.sampled_from(metrics.NMI_AVERAGES))
def test_evaluate_and_score_equal_sklearn(yp, average):
    """The one-table paths (evaluate, score) against sklearn, not only against the single metrics."""
    y, p = yp
    want = sklearn_all(y, p)
    got = metrics.evaluate(y, p, nmi_average=average)
    assert set(got) == set(metrics.METRICS)
    assert_close({**got, f"nmi_{average}": got["nmi"]}, {k: want[k] for k in ("acc", "ari", "f_score", "purity", f"nmi_{average}")})
    stored = metrics.score(y, p)
    assert_close({**stored, "nmi_arithmetic": stored["nmi"]}, {k: want[k] for k in ("acc", "ari", "f_score", "purity",
                                                                                     "nmi_arithmetic", "nmi_geometric")})


@given(labelings())
def test_contingency_table_equals_sklearn(yp):
    y, p = yp
    np.testing.assert_array_equal(metrics.contingency_table(y, p), contingency_matrix(p, y))


def test_one_cluster_and_singletons_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    one = np.full(6, 4)
    assert metrics.evaluate(y, one) == pytest.approx({"acc": 2 / 6, "nmi": 0.0, "ari": 0.0, "f_score": 2 * (6 / 30) / (1 + 6 / 30),
                                                      "purity": 2 / 6})
    single = np.arange(6) * 10
    # no pair together in the prediction: precision undefined -> F = 0; each singleton is pure
    assert metrics.f_score(y, single) == 0.0 and metrics.purity(y, single) == 1.0 and metrics.acc(y, single) == 3 / 6


def test_too_many_clusters_is_a_clear_error():
    ids = np.arange(20_000, dtype=np.int64) * 10**9  # far-apart ids: 20,000 x 20,000 cells
    with pytest.raises(ValueError, match="too large a contingency table"):
        metrics.evaluate(ids, ids[::-1].copy())


def test_million_labels_fast():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 20, 1_000_000)
    p = (y + (rng.random(1_000_000) < 0.1) * rng.integers(0, 20, 1_000_000)) % 20
    import time

    t = time.perf_counter()
    out = metrics.evaluate(y, p)
    assert time.perf_counter() - t < 20  # vectorised; a per-sample Python loop would take minutes
    assert 0.85 < out["acc"] < 0.95
