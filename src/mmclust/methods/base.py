"""What every clustering method shares: the estimator API over a ``MultiModalDataset``."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from ..data import DataError, MultiModalDataset

__all__ = ["MultiModalClusterer", "DivergenceError", "select_view", "SINGLE_VIEW_VARIANTS"]

# Variants of the single-view baselines (the papers' "+ KM" / "+ DEC" rows): one view, or all side by side.
SINGLE_VIEW_VARIANTS = {"full": {"view": "concat"}, "concat": {"view": "concat"}, "image": {"view": "image"}, "text": {"view": "text"}}


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss; ``epoch`` says when."""

    def __init__(self, message: str, epoch: int | None = None):
        super().__init__(message)
        self.epoch = epoch


class MultiModalClusterer(ClusterMixin, BaseEstimator):
    """Base class. ``fit(dataset)`` sets ``labels_`` and ``history_`` (list of per-epoch dicts).

    Label-blindness: ``fit`` reads ``dataset.n_clusters`` (k) and nothing else from the labels.
    ``n_clusters=None`` means "take k from the dataset".
    """

    def _n_clusters(self, ds: MultiModalDataset) -> int:
        k = getattr(self, "n_clusters", None) or ds.n_clusters
        if k < 2:
            raise DataError(f"{ds.name}: need at least 2 clusters, got k={k}")
        if k > ds.n_samples:
            raise DataError(f"{ds.name}: k={k} clusters exceeds the {ds.n_samples} samples")
        return int(k)

    @staticmethod
    def _check_dataset(ds, min_views: int = 1) -> MultiModalDataset:
        if not isinstance(ds, MultiModalDataset):
            raise TypeError(f"fit expects a MultiModalDataset, got {type(ds).__name__}")
        if len(ds.views) < min_views:
            raise DataError(f"{ds.name}: this method needs at least {min_views} views, got {list(ds.views)}")
        return ds

    def fit_predict(self, ds, y=None):  # noqa: D401 - sklearn signature
        return self.fit(ds).labels_



def select_view(ds: MultiModalDataset, view: str) -> np.ndarray:
    """Features of one view ("image"/"text" fall back to the first/second view) or of all views side by side.

    Rows where a view is missing are filled with that view's mean (never read as given).
    """
    names = list(ds.views)
    if view == "concat":
        chosen = names
    elif view in ds.views:
        chosen = [view]
    elif view in ("image", "text") and len(names) >= 2:
        chosen = [names[0 if view == "image" else 1]]
    else:
        raise DataError(f"{ds.name}: unknown view {view!r}; valid: 'concat', {', '.join(map(repr, names))}")
    parts = []
    for v in chosen:
        x, m = ds.views[v], ds.present[v]
        fill = x[m].mean(0) if m.any() else np.zeros(x.shape[1], dtype=np.float32)
        parts.append(np.where(m[:, None], x, fill))
    return np.concatenate(parts, axis=1).astype(np.float32)
