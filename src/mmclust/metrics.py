"""Clustering metrics: one set of functions used by every method, test and report.

All take ``(y_true, y_pred)`` as 1-d integer arrays of equal length and return a float in [0, 1]
(ARI can be negative). Cluster ids need not be 0..k-1 and the number of predicted clusters may
differ from the number of classes.

Every metric is a closed form of one contingency table (clusters x classes), built by a single
``np.bincount`` (:func:`contingency_table`); :func:`evaluate` and :func:`score` build it once for all
of them. The definitions are scikit-learn's (DESIGN.md, "Metrics — exact definitions"), and the tests
hold every value equal to scikit-learn's to 1e-12: ACC is the Hungarian matching of DEC, NMI
``normalized_mutual_info_score`` (any normaliser), ARI ``adjusted_rand_score``, the pairwise F-score
and purity come from ``pair_confusion_matrix`` and ``contingency_matrix``.
"""

from __future__ import annotations

from math import log

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["acc", "nmi", "ari", "f_score", "purity", "evaluate", "score", "contingency_table", "METRICS",
           "NMI_AVERAGES"]

NMI_AVERAGES = ("arithmetic", "geometric", "min", "max")
# A dense table this large (int64: 1 GiB) means a labelling with about as many clusters as samples, where
# ACC's Hungarian matching is out of reach anyway; refuse it with a clear error instead of swapping.
_MAX_CELLS = 2**27


def _check_labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.ndim != 1:
            raise ValueError(f"{name} must be 1-d, got shape {y.shape}")
        if y.size == 0:
            raise ValueError(f"{name} is empty: metrics need at least one sample")
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
            if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
                continue  # integer-valued floats (as loadmat gives) are accepted
            raise ValueError(f"{name} must hold integer labels, got dtype {y.dtype}")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.size} vs {y_pred.size}")
    return y_true.astype(np.int64, copy=False), y_pred.astype(np.int64, copy=False)


def _codes(y: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids remapped to 0..k-1 (in sorted order) and k."""
    lo, hi = int(y.min()), int(y.max())
    if hi - lo < 2 * y.size + 1024:  # a lookup table over the id range costs no more than the labels themselves
        shifted = y - lo if lo else y
        present = np.bincount(shifted, minlength=hi - lo + 1) > 0
        lut = np.cumsum(present) - 1
        return lut[shifted], int(present.sum())
    ids, codes = np.unique(y, return_inverse=True)
    return codes.reshape(-1), ids.size


def contingency_table(y_true, y_pred) -> np.ndarray:
    """Counts ``w[i, j]`` of samples in predicted cluster i and true class j (int64), from one ``np.bincount``.

    Rows and columns are the clusters and classes that occur, in sorted id order (no empty row or column).
    """
    y_true, y_pred = _check_labels(y_true, y_pred)
    return _table(y_true, y_pred)


def _table(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    t_lo, t_hi, p_lo, p_hi = int(y_true.min()), int(y_true.max()), int(y_pred.min()), int(y_pred.max())
    if t_lo >= 0 and p_lo >= 0 and (t_hi + 1) * (p_hi + 1) <= max(4 * y_true.size, 2**20):
        # small non-negative ids (the usual case): no remapping, then drop the ids that do not occur
        kt, kp = t_hi + 1, p_hi + 1
        w = np.bincount(y_pred * kt + y_true, minlength=kp * kt).reshape(kp, kt)
        rows, cols = w.any(1), w.any(0)
        return w if rows.all() and cols.all() else w[rows][:, cols]
    ct, kt = _codes(y_true)
    cp, kp = _codes(y_pred)
    if kp * kt > _MAX_CELLS:
        raise ValueError(f"{kp} clusters x {kt} classes is too large a contingency table ({kp * kt} cells); "
                         "metrics need far fewer clusters than samples")
    return np.bincount(cp * kt + ct, minlength=kp * kt).reshape(kp, kt)


# -- closed forms on the table (rows: predicted clusters, columns: true classes) -----------------------------
def _acc(w: np.ndarray, n: int) -> float:
    # Rectangular maximum-weight matching: surplus clusters (or classes) stay unmatched and count as errors,
    # the same optimum as the square zero-padded table of DEC's code.
    rows, cols = linear_sum_assignment(w, maximize=True)
    return float(w[rows, cols].sum() / n)


def _purity(w: np.ndarray, n: int) -> float:
    return float(w.max(axis=1).sum() / n)


def _pair_counts(w: np.ndarray, n: int) -> tuple[int, int, int, int]:
    """``(tn, fp, fn, tp)`` over ordered sample pairs, as ``pair_confusion_matrix`` counts them (Python ints)."""
    sum_sq = int((w * w).sum())
    fp = int((w.sum(1) ** 2).sum()) - sum_sq  # together in the prediction only
    fn = int((w.sum(0) ** 2).sum()) - sum_sq  # together in the truth only
    tp = sum_sq - n
    return n * n - fp - fn - sum_sq, fp, fn, tp


def _ari(pairs) -> float:
    tn, fp, fn, tp = pairs
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def _f_score(pairs) -> float:
    _, fp, fn, tp = pairs
    if tp == 0:
        return 1.0 if fp == 0 and fn == 0 else 0.0
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return float(2 * precision * recall / (precision + recall))


def _entropy(counts: np.ndarray) -> float:
    if counts.size == 1:
        return 0.0
    counts = counts.astype(np.float64)
    total = counts.sum()
    return float(-np.sum((counts / total) * (np.log(counts) - log(total))))


def _mutual_information(w: np.ndarray, n: int) -> float:
    """MI in nats, sklearn's ``mutual_info_score`` term by term on the non-zero cells."""
    if w.shape[0] == 1 or w.shape[1] == 1:
        return 0.0
    w = w.T  # classes x clusters: sklearn's order of the non-zero cells, so the sum rounds as sklearn's does
    a, b = w.sum(1), w.sum(0)
    i, j = np.nonzero(w)
    nz = w[i, j].astype(np.float64)
    p = nz / n
    log_outer = -np.log(a[i] * b[j]) + log(a.sum()) + log(b.sum())
    mi = p * (np.log(nz) - log(n)) + p * log_outer
    mi = np.where(np.abs(mi) < np.finfo(mi.dtype).eps, 0.0, mi)
    return float(np.clip(mi.sum(), 0.0, None))


def _nmi_all(w: np.ndarray, n: int, averages) -> dict[str, float]:
    if w.shape == (1, 1):  # neither labelling splits the data: a perfect match
        return {a: 1.0 for a in averages}
    mi = _mutual_information(w, n)
    if mi == 0:
        return {a: 0.0 for a in averages}
    h_true, h_pred = _entropy(w.sum(0)), _entropy(w.sum(1))
    norm = {"arithmetic": (h_true + h_pred) / 2, "geometric": float(np.sqrt(h_true * h_pred)),
            "min": min(h_true, h_pred), "max": max(h_true, h_pred)}
    return {a: float(mi / norm[a]) for a in averages}


def _check_average(average_method: str) -> None:
    if average_method not in NMI_AVERAGES:
        raise ValueError(f"average_method must be one of {NMI_AVERAGES}, got {average_method!r}")


# -- the public metrics ----------------------------------------------------------------------------------------
def acc(y_true, y_pred) -> float:
    """Clustering accuracy: the best one-to-one map of clusters to classes (Hungarian), as in DEC.

    When the numbers of clusters and classes differ, surplus clusters map to no class and count as errors
    (the zero-padded square table of DEC's code has the same optimum).
    """
    y_true, y_pred = _check_labels(y_true, y_pred)
    return _acc(_table(y_true, y_pred), y_true.size)


def nmi(y_true, y_pred, average_method: str = "arithmetic") -> float:
    """Normalised mutual information (sklearn's definition). ``average_method`` is the normaliser the paper used."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    _check_average(average_method)
    return _nmi_all(_table(y_true, y_pred), y_true.size, (average_method,))[average_method]


def ari(y_true, y_pred) -> float:
    """Adjusted Rand index (sklearn's definition, from pair counts)."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    return _ari(_pair_counts(_table(y_true, y_pred), y_true.size))


def f_score(y_true, y_pred) -> float:
    """Pairwise F-measure: precision and recall over same-cluster sample pairs (DM2C's F-score).

    TP = pairs together in both, FP = together only in the prediction, FN = together only in the truth
    (sklearn's pair confusion matrix). Defined as 1.0 when neither puts any pair together.
    """
    y_true, y_pred = _check_labels(y_true, y_pred)
    return _f_score(_pair_counts(_table(y_true, y_pred), y_true.size))


def purity(y_true, y_pred) -> float:
    """Purity: each cluster votes for its majority class; the fraction of samples in the majority."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    return _purity(_table(y_true, y_pred), y_true.size)


METRICS = ("acc", "nmi", "ari", "f_score", "purity")


def _all_metrics(y_true, y_pred, averages) -> tuple[dict[str, float], dict[str, float]]:
    y_true, y_pred = _check_labels(y_true, y_pred)
    n = y_true.size
    w = _table(y_true, y_pred)
    pairs = _pair_counts(w, n)
    nmis = _nmi_all(w, n, averages)
    return {"acc": _acc(w, n), "nmi": nmis[averages[0]], "ari": _ari(pairs), "f_score": _f_score(pairs),
            "purity": _purity(w, n)}, nmis


def evaluate(y_true, y_pred, nmi_average: str = "arithmetic") -> dict[str, float]:
    """All five metrics as a dict keyed by ``METRICS`` names, from one contingency table."""
    _check_average(nmi_average)
    return _all_metrics(y_true, y_pred, (nmi_average,))[0]


def score(y_true, y_pred) -> dict[str, float]:
    """What a run stores: the five metrics (arithmetic NMI) and ``nmi_geometric`` (the normaliser some papers use)."""
    out, nmis = _all_metrics(y_true, y_pred, ("arithmetic", "geometric"))
    out["nmi_geometric"] = nmis["geometric"]
    return out
