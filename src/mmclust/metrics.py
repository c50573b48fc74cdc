"""Clustering metrics: one set of functions used by every method, test and report.

All take ``(y_true, y_pred)`` as 1-d integer arrays of equal length and return a float in [0, 1]
(ARI can be negative). Cluster ids need not be 0..k-1 and the number of predicted clusters may
differ from the number of classes. Everything is vectorised through the contingency matrix, so
10^6 labels take milliseconds, not a Python loop.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix, pair_confusion_matrix

__all__ = ["acc", "nmi", "ari", "f_score", "purity", "evaluate", "score", "METRICS", "NMI_AVERAGES"]

NMI_AVERAGES = ("arithmetic", "geometric", "min", "max")


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
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def _contingency(y_true, y_pred) -> np.ndarray:
    # rows: predicted clusters, columns: true classes (dense; k is small in clustering)
    return contingency_matrix(y_pred, y_true)


def acc(y_true, y_pred) -> float:
    """Clustering accuracy: the best one-to-one map of clusters to classes (Hungarian), as in DEC.

    The contingency matrix is padded to square with zeros when the numbers of clusters and
    classes differ, so surplus clusters map to no class and count as errors.
    """
    y_true, y_pred = _check_labels(y_true, y_pred)
    w = _contingency(y_true, y_pred)
    size = max(w.shape)
    padded = np.zeros((size, size), dtype=np.int64)
    padded[: w.shape[0], : w.shape[1]] = w
    rows, cols = linear_sum_assignment(padded.max() - padded)
    return float(padded[rows, cols].sum() / y_true.size)


def nmi(y_true, y_pred, average_method: str = "arithmetic") -> float:
    """Normalised mutual information (sklearn). ``average_method`` is the normaliser the paper used."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    if average_method not in NMI_AVERAGES:
        raise ValueError(f"average_method must be one of {NMI_AVERAGES}, got {average_method!r}")
    return float(normalized_mutual_info_score(y_true, y_pred, average_method=average_method))


def ari(y_true, y_pred) -> float:
    """Adjusted Rand index (sklearn)."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    return float(adjusted_rand_score(y_true, y_pred))


def f_score(y_true, y_pred) -> float:
    """Pairwise F-measure: precision and recall over same-cluster sample pairs (DM2C's F-score).

    From sklearn's pair confusion matrix: TP = pairs together in both, FP = together only in the
    prediction, FN = together only in the truth. Defined as 1.0 when neither puts any pair together.
    """
    y_true, y_pred = _check_labels(y_true, y_pred)
    (_, fp), (fn, tp) = pair_confusion_matrix(y_true, y_pred)
    if tp == 0:
        return 1.0 if fp == 0 and fn == 0 else 0.0
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return float(2 * precision * recall / (precision + recall))


def purity(y_true, y_pred) -> float:
    """Purity: each cluster votes for its majority class; the fraction of samples in the majority."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    return float(_contingency(y_true, y_pred).max(axis=1).sum() / y_true.size)


METRICS = ("acc", "nmi", "ari", "f_score", "purity")


def evaluate(y_true, y_pred, nmi_average: str = "arithmetic") -> dict[str, float]:
    """All five metrics as a dict keyed by ``METRICS`` names."""
    return {
        "acc": acc(y_true, y_pred),
        "nmi": nmi(y_true, y_pred, average_method=nmi_average),
        "ari": ari(y_true, y_pred),
        "f_score": f_score(y_true, y_pred),
        "purity": purity(y_true, y_pred),
    }


def score(y_true, y_pred) -> dict[str, float]:
    """What a run stores: the five metrics (arithmetic NMI) and ``nmi_geometric`` (the normaliser some papers use)."""
    out = evaluate(y_true, y_pred)
    out["nmi_geometric"] = nmi(y_true, y_pred, average_method="geometric")
    return out
