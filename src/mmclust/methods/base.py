"""What every clustering method shares: the estimator API over a ``MultiModalDataset``."""

from __future__ import annotations

import numpy as np
from scipy import sparse as _sp
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.exceptions import NotFittedError

from ..data import DataError, MultiModalDataset

__all__ = ["MultiModalClusterer", "DivergenceError", "select_view", "view_means", "SINGLE_VIEW_VARIANTS", "as_dataset"]

# Variants of the single-view baselines (the papers' "+ KM" / "+ DEC" rows): one view, or all side by side.
SINGLE_VIEW_VARIANTS = {"full": {"view": "concat"}, "concat": {"view": "concat"}, "image": {"view": "image"}, "text": {"view": "text"}}


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss; ``epoch`` says when."""

    def __init__(self, message: str, epoch: int | None = None):
        super().__init__(message)
        self.epoch = epoch


class MultiModalClusterer(ClusterMixin, BaseEstimator):
    """Base class. ``fit(dataset)`` sets ``labels_`` and ``history_`` (list of per-epoch dicts).

    Label-blindness: ``fit`` reads ``dataset.n_clusters`` (k) and nothing else from the labels; a fit on
    the data set without labels, with its labels, or with its labels shuffled across samples gives the same
    ``labels_`` and ``history_`` (one shared test holds every registered method to this).
    ``n_clusters=None`` means "take k from the dataset"; unlabelled data then needs ``n_clusters``.
    ``predict(dataset)`` assigns new samples to the fitted clusters (train/test protocols).
    """

    def _n_clusters(self, ds: MultiModalDataset) -> int:
        k = getattr(self, "n_clusters", None)
        if k is None:
            k = ds.n_clusters
            if k is None:
                raise DataError(f"{ds.name}: the data set has no labels, so n_clusters must be given")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise DataError(f"n_clusters must be an integer, got {k!r}")
        if k < 2:
            raise DataError(f"{ds.name}: need at least 2 clusters, got k={k}")
        if k > ds.n_samples:
            raise DataError(f"{ds.name}: k={k} clusters exceeds the {ds.n_samples} samples")
        return int(k)

    # Methods that work on sparse views as given (k-means); every other method gets them densified, with a
    # DataError stating the memory needed above ``MAX_DENSE_BYTES``.
    accepts_sparse = False
    # How many views the method takes (None: any number); a run on a user's file with more picks the first N_VIEWS.
    N_VIEWS = None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # taken as is (accepts_sparse) or densified with a memory check
        tags.input_tags.allow_nan = False  # NaN only in rows a view is marked missing (MultiModalDataset.present)
        tags.non_deterministic = False  # random_state makes a CPU fit repeatable
        return tags

    def _check_dataset(self, ds, min_views: int = 1) -> MultiModalDataset:
        """``ds`` as a MultiModalDataset (a list or dict of arrays is wrapped, see :func:`as_dataset`), densified
        unless the method ``accepts_sparse``, with at least ``min_views`` views."""
        ds = as_dataset(ds)
        if not self.accepts_sparse:
            ds = ds.densified()
        if len(ds.views) < min_views:
            raise DataError(f"{ds.name}: this method needs at least {min_views} views, got {list(ds.views)}")
        return ds

    def fit_predict(self, ds, y=None):  # noqa: D401 - sklearn signature
        return self.fit(ds).labels_

    def _check_fitted_for(self, ds) -> MultiModalDataset:
        """``predict``'s guard: fitted, and the same views with the same widths as the training data."""
        ds = self._check_dataset(ds)
        dims = getattr(self, "fitted_dims_", None)
        if dims is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit before predict")
        # in the fitted order too: methods read "the first view" as the image, and equal widths would hide a swap
        if list(ds.dims.items()) != list(dims.items()):
            raise DataError(f"{ds.name}: predict needs the views the model was fitted on, in that order, {dims}; "
                            f"got {dict(ds.dims)}")
        return ds



def as_dataset(x) -> MultiModalDataset:
    """What scikit-learn users pass to ``fit``, as a MultiModalDataset without labels.

    A MultiModalDataset is returned as is; a dict of arrays keeps its names; a list or tuple of 2-d arrays becomes views
    ``view0``, ``view1``, ...; a single 2-d array (dense or sparse, or a list of rows) is one view ``view0``.
    Samples in rows.
    """
    if isinstance(x, MultiModalDataset):
        return x
    if _sp.issparse(x):  # before the dict test: scipy's DOK matrix is a dict
        return MultiModalDataset({"view0": x}, labels=None, name="input")
    if isinstance(x, dict):
        return MultiModalDataset(dict(x), labels=None, name="input")
    if isinstance(x, (list, tuple)) and x and all(_sp.issparse(v) or np.ndim(v) == 2 for v in x):
        return MultiModalDataset({f"view{i}": v for i, v in enumerate(x)}, labels=None, name="input")
    if np.ndim(x) == 2:  # one matrix, also as a list of rows (scikit-learn's array-like)
        return MultiModalDataset({"view0": x}, labels=None, name="input")
    raise DataError(f"fit expects a MultiModalDataset, a dict or list of (n, d) arrays or one (n, d) array; "
                    f"got {type(x).__name__} of shape {np.shape(x)}")


def view_means(ds: MultiModalDataset) -> dict:
    """Each view's mean over its present rows (zeros when none): the fill for missing rows."""
    return {v: (np.asarray(x[ds.present[v]].mean(0), dtype=np.float32).ravel() if ds.present[v].any()
                else np.zeros(x.shape[1], dtype=np.float32))
            for v, x in ds.views.items()}


def select_view(ds: MultiModalDataset, view: str, fill: dict | None = None) -> np.ndarray:
    """Features of one view ("image"/"text" fall back to the first/second view) or of all views side by side.

    Rows where a view is missing are filled with ``fill[view]`` (default: that view's mean over the present
    rows of ``ds``; ``predict`` passes the training data's means), never read as given.
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
    if all(_sp.issparse(ds.views[v]) and ds.present[v].all() for v in chosen):
        # sparse and complete: stays sparse (k-means takes CSR); a missing row's mean fill would make it dense
        return _sp.hstack([ds.views[v] for v in chosen], format="csr", dtype=np.float32)
    ds = ds.densified()
    fill = view_means(ds) if fill is None else fill
    parts = [np.where(ds.present[v][:, None], ds.views[v], fill[v]) for v in chosen]
    return np.concatenate(parts, axis=1).astype(np.float32)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_scale(ds: MultiModalDataset) -> None:
    """Refuse features whose squared Euclidean distances cannot be held in float32.

    Every method computes squared distances between rows (k-means, Student-t assignments) in float32: with
    ``d`` features no larger than ``m`` in magnitude a squared distance is at most ``d * (2m)**2``. Past
    float32's maximum it becomes inf and the clustering collapses to one cluster with only overflow warnings;
    refusing names the problem (rescale the features) instead of returning a meaningless partition.
    """
    dims, worst, where = 0, 0.0, None
    for v, x in ds.views.items():
        rows = x[ds.present[v]]
        dims += x.shape[1]
        m = float(abs(rows).max()) if rows.shape[0] and rows.size else 0.0  # abs(): dense or scipy sparse
        if m > worst:
            worst, where = m, v
    if dims and dims * (2.0 * worst) ** 2 > _FLOAT32_MAX:
        raise DataError(f"{ds.name}: features up to {worst:.3g} in magnitude (view {where!r}): squared distances between "
                        f"rows of {dims} features overflow float32 (max {_FLOAT32_MAX:.3g}); rescale the features "
                        f"(e.g. standardise each view) so that their magnitudes stay below {0.5 * (_FLOAT32_MAX / dims) ** 0.5:.3g}")

