"""Single-view and concatenation baselines (the papers' "BestSM", "+ KM" rows)."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans as _SKKMeans
from sklearn.preprocessing import StandardScaler

from ..data import DataError, MultiModalDataset
from ..runtime import seed_from
from .base import MultiModalClusterer

__all__ = ["KMeansBaseline"]


class KMeansBaseline(MultiModalClusterer):
    """k-means on one view or on the concatenation of all views.

    Parameters
    ----------
    view : "concat" or a view name
        ``"concat"`` uses every view side by side (missing rows filled with the view's mean over
        present rows, the mean-imputation baseline CIGIT-C describes); a view name clusters all
        samples on that view alone (rows where it is missing get its mean).
    n_init : int, default 20
        CIGIT-C 4.1.5: "We initialise 20 times and choose the best answer ... using the k-means algorithm".
    standardize : bool, default False
        Papers feed raw features; standardising is offered because views differ in scale.

    ``labels_`` are k-means' hard assignments.
    """

    VARIANTS = {"full": {"view": "concat"}, "concat": {"view": "concat"}, "image": {"view": "image"}, "text": {"view": "text"}}

    def __init__(self, n_clusters=None, view="concat", n_init=20, standardize=False, random_state=None):
        self.n_clusters = n_clusters
        self.view = view
        self.n_init = n_init
        self.standardize = standardize
        self.random_state = random_state

    def _features(self, ds: MultiModalDataset) -> np.ndarray:
        if self.view == "concat":
            names = list(ds.views)
        elif self.view in ds.views:
            names = [self.view]
        elif self.view in ("image", "text") and len(ds.views) >= 2:
            # stand-in data sets name their views otherwise (gist/lbp, ...): the first view plays the image
            names = [list(ds.views)[0 if self.view == "image" else 1]]
        else:
            raise DataError(f"{ds.name}: unknown view {self.view!r}; valid: 'concat', {', '.join(map(repr, ds.views))}")
        parts = []
        for v in names:
            x, m = ds.views[v], ds.present[v]
            fill = x[m].mean(0) if m.any() else np.zeros(x.shape[1], dtype=np.float32)
            parts.append(np.where(m[:, None], x, fill))
        x = np.concatenate(parts, axis=1)
        return StandardScaler().fit_transform(x) if self.standardize else x

    def fit(self, ds, y=None):
        ds = self._check_dataset(ds)
        k = self._n_clusters(ds)
        km = _SKKMeans(n_clusters=k, n_init=self.n_init, random_state=seed_from(self.random_state))
        self.labels_ = km.fit_predict(self._features(ds)).astype(np.int64)
        self.cluster_centers_ = km.cluster_centers_
        self.history_ = [{"epoch": 0, "loss": float(km.inertia_)}]
        return self
