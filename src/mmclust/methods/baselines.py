"""Single-view and concatenation baselines (the papers' "BestSM", "+ KM" rows)."""

from __future__ import annotations

import numpy as np
from scipy import sparse as _sp
from sklearn.cluster import KMeans as _SKKMeans
from sklearn.preprocessing import StandardScaler, normalize as _l2_rows

from ..data import DataError, MultiModalDataset
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
    normalize : None, "standardize" or "l2", default None
        Preprocessing before k-means. None: raw features, as the papers feed them (the default, so that
        reproductions are unchanged). ``"standardize"``: every column to zero mean and unit variance (without
        centring a sparse matrix, which would make it dense); offered because views differ in scale.
        ``"l2"``: every row of every view to unit Euclidean length, then the views side by side (each view weighs
        the same); what tf-idf / bag-of-words data wants, where standardising blows up rare words (measured on a
        tf-idf-like file: see the README's "Your own data").
    standardize : bool, default False
        The older spelling of ``normalize="standardize"`` (kept so that existing calls and stored runs stay valid).

    ``labels_`` are k-means' hard assignments; ``predict`` gives new samples their nearest centre (missing
    views filled with the training data's means, preprocessed as the training data). Sparse views stay sparse
    when no row misses a view (scikit-learn's k-means takes CSR input).
    """

    accepts_sparse = True
    NORMALIZE = (None, "standardize", "l2")

    VARIANTS = SINGLE_VIEW_VARIANTS

    def __init__(self, n_clusters=None, view="concat", n_init=20, standardize=False, random_state=None, normalize=None):
        self.n_clusters = n_clusters
        self.view = view
        self.n_init = n_init
        self.standardize = standardize
        self.random_state = random_state
        self.normalize = normalize

    def _preprocessing(self) -> str | None:
        if self.normalize not in self.NORMALIZE:
            raise DataError(f"k-means: normalize must be one of {self.NORMALIZE}, got {self.normalize!r}")
        if self.standardize and self.normalize not in (None, "standardize"):
            raise DataError(f"k-means: standardize=True contradicts normalize={self.normalize!r}; give only normalize")
        return "standardize" if self.standardize else self.normalize

    def _features(self, ds: MultiModalDataset):
        """The matrix k-means sees: the chosen view(s), missing rows mean-filled, preprocessed."""
        if self.preprocessing_ == "l2":
            # each view's rows to unit length before they are put side by side (a missing row: the view's mean
            # row, normalised like the others)
            names = list(ds.views) if self.view == "concat" else [self.view]
            parts = [select_view(ds, v, self.view_fill_) for v in names]
            parts = [_l2_rows(p) for p in parts]
            return _sp.hstack(parts, format="csr") if all(_sp.issparse(p) for p in parts) else \
                np.concatenate([p.toarray() if _sp.issparse(p) else p for p in parts], axis=1)
        x = select_view(ds, self.view, self.view_fill_)
        return self.scaler_.transform(x) if self.scaler_ is not None else x

    def fit(self, ds, y=None):
        ds = self._check_dataset(ds)
        check_float32_scale(ds)
        k = self._n_clusters(ds)
        self.preprocessing_ = self._preprocessing()
        self.view_fill_ = view_means(ds)
        self.scaler_ = None
        if self.preprocessing_ == "standardize":
            # centring a sparse matrix would make it dense: sparse input is scaled only
            x = select_view(ds, self.view, self.view_fill_)
            self.scaler_ = StandardScaler(with_mean=not _sp.issparse(x)).fit(x)
        km = _SKKMeans(n_clusters=k, n_init=self.n_init, random_state=seed_from(self.random_state))
        self.labels_ = km.fit_predict(self._features(ds)).astype(np.int64)
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
        return self.kmeans_.predict(self._features(ds)).astype(np.int64)
