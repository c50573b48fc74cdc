"""Single-view and concatenation baselines (the papers' "BestSM", "+ KM" rows)."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans as _SKKMeans
from sklearn.preprocessing import StandardScaler

from ..data import MultiModalDataset
from ..runtime import seed_from
from .base import SINGLE_VIEW_VARIANTS, DivergenceError, MultiModalClusterer, check_float32_scale, select_view, view_means

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

    ``labels_`` are k-means' hard assignments; ``predict`` gives new samples their nearest centre (missing
    views filled with the training data's means, standardised with the training data's scaler).
    """

    VARIANTS = SINGLE_VIEW_VARIANTS

    def __init__(self, n_clusters=None, view="concat", n_init=20, standardize=False, random_state=None):
        self.n_clusters = n_clusters
        self.view = view
        self.n_init = n_init
        self.standardize = standardize
        self.random_state = random_state

    def fit(self, ds, y=None):
        ds = self._check_dataset(ds)
        check_float32_scale(ds)
        k = self._n_clusters(ds)
        self.view_fill_ = view_means(ds)
        x = select_view(ds, self.view, self.view_fill_)
        self.scaler_ = StandardScaler().fit(x) if self.standardize else None
        km = _SKKMeans(n_clusters=k, n_init=self.n_init, random_state=seed_from(self.random_state))
        self.labels_ = km.fit_predict(self.scaler_.transform(x) if self.scaler_ else x).astype(np.int64)
        self.kmeans_ = km
        self.cluster_centers_ = km.cluster_centers_
        self.history_ = [{"epoch": 0, "loss": float(km.inertia_)}]
        if not np.isfinite(km.inertia_):  # the scale check bounds the input; this catches what it cannot foresee
            raise DivergenceError(f"{ds.name}: k-means inertia is {km.inertia_} (float32 overflow); rescale the features", epoch=0)
        self.fitted_dims_ = dict(ds.dims)
        return self

    def predict(self, ds) -> np.ndarray:
        """Nearest fitted centre for each sample of ``ds``."""
        ds = self._check_fitted_for(ds)
        x = select_view(ds, self.view, self.view_fill_)
        return self.kmeans_.predict(self.scaler_.transform(x) if self.scaler_ else x).astype(np.int64)
