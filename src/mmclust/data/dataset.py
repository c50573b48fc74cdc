"""The one data contract every method and protocol speaks: ``MultiModalDataset``."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from scipy import sparse as _sp

__all__ = ["DataError", "MultiModalDataset", "MAX_DENSE_BYTES"]

# A sparse view is densified only for methods that need dense input, and only below this size: a 100k x 50k
# tf-idf matrix would be 20 GB as float32. Chosen to fit a laptop's memory with room for the method's own copies.
MAX_DENSE_BYTES = 4 * 1024**3


class DataError(ValueError):
    """Invalid data: the message names the data set, the view, the row and the problem."""


@dataclass(frozen=True, eq=False)
class MultiModalDataset:
    """Samples seen through several views (e.g. ``image`` and ``text``) with ground-truth labels.

    Parameters
    ----------
    views : dict name -> float32 array (n, d_view) or scipy sparse matrix
        Features, samples in rows. Rows of a view where ``present[view]`` is False are ignored by every method
        (their content may be anything, NaN included). A sparse view (tf-idf, bag of words) is kept sparse as a
        float32 CSR array for what can use it (k-means); :meth:`densified` gives the dense copy other methods need.
    labels : int array (n,) or None
        Classes 0..k-1. Used by the harness for metrics and by ``fit`` only for ``k``. ``None``: unlabelled
        data (clustering works, scoring does not; a method then needs ``n_clusters``).
    present : dict name -> bool array (n,), optional
        Which samples have which view; all True when omitted.
    name : str
    class_names : tuple of str, optional
    context : dict name -> array, optional
        Read-only side information that is not per sample and so not a view (e.g. MCA's noun vocabulary and its
        WordNet hypernym edges). Label-free by contract; kept unchanged by ``subset``, ``replace`` and
        ``without_labels``. Arrays are copied and made read-only like the views.

    Validation on construction raises :class:`DataError`: same ``n`` in every view, finite values
    where present, labels in 0..k-1 with every class used, at least one view per sample.
    Arrays are copied to float32 / int64 / bool and made read-only, so a dataset never changes
    under a method's feet.
    """

    views: dict
    labels: np.ndarray | None
    present: dict = field(default=None)
    name: str = "dataset"
    class_names: tuple = field(default=None)
    context: dict = field(default=None)

    def __post_init__(self):
        name = self.name
        if not isinstance(self.views, dict) or not self.views:
            raise DataError(f"{name}: views must be a non-empty dict of name -> (n, d) array")
        if self.labels is None:
            labels, n = None, _rows_of(self.views, name)
        else:
            labels = _checked_labels(self.labels, name)
            n = labels.shape[0]
        k = None if labels is None else int(labels.max()) + 1

        present_in = self.present or {}
        unknown = set(present_in) - set(self.views)
        if unknown:
            raise DataError(f"{name}: present masks given for unknown view(s) {sorted(unknown)}")
        views, present = {}, {}
        for view, x in self.views.items():
            is_sparse = _sp.issparse(x)
            x = x if is_sparse else np.asarray(x)
            if x.ndim != 2:
                raise DataError(f"{name}: view {view!r} must be 2-d (n, d), got shape {x.shape}")
            if x.shape[0] != n:
                raise DataError(f"{name}: view {view!r} has {x.shape[0]} rows but " + (f"there are {n} labels" if labels is not None else f"the first view has {n}"))
            if x.shape[1] == 0:
                raise DataError(f"{name}: view {view!r} has no features")
            if not (np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)) or np.issubdtype(x.dtype, np.complexfloating):
                kind = "Complex data not supported" if np.issubdtype(x.dtype, np.complexfloating) else "not numeric"
                raise DataError(f"{name}: view {view!r} is not real-valued numeric (dtype {x.dtype}; {kind})")
            mask = present_in.get(view)
            mask = np.ones(n, dtype=bool) if mask is None else np.asarray(mask)
            if mask.shape != (n,) or mask.dtype != np.bool_:
                raise DataError(f"{name}: present[{view!r}] must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}")
            if is_sparse:
                views[view], present[view] = _checked_sparse(x, mask, name, view), _read_only(mask.copy())
                continue
            x = x.astype(np.float32)  # astype copies, so the caller's array is never aliased
            bad = ~np.isfinite(x[mask]).all(axis=1)
            if bad.any():
                row = int(np.flatnonzero(mask)[np.argmax(bad)])
                col = int(np.argmax(~np.isfinite(x[row])))
                raise DataError(
                    f"{name}: view {view!r} row {row} column {col} is {x[row, col]} (NaN or inf: non-finite) although the view is marked present"
                )
            x.flags.writeable = False
            mask = mask.copy()
            mask.flags.writeable = False
            views[view], present[view] = x, mask
        any_view = np.logical_or.reduce([m for m in present.values()])
        if not any_view.all():
            row = int(np.argmin(any_view))
            raise DataError(f"{name}: row {row} has no view present; every sample needs at least one")
        if labels is not None:
            labels.flags.writeable = False
            class_names = tuple(self.class_names) if self.class_names is not None else tuple(str(c) for c in range(k))
            if len(class_names) != k:
                raise DataError(f"{name}: {len(class_names)} class names for {k} classes")
        else:
            class_names = None if self.class_names is None else tuple(self.class_names)
        object.__setattr__(self, "views", views)
        object.__setattr__(self, "present", present)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", class_names)
        object.__setattr__(self, "context", _checked_context(self.context, name))

    # -- convenience ---------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(next(iter(self.views.values())).shape[0])

    @property
    def n_clusters(self) -> int | None:
        """Number of classes, or None for unlabelled data without class names."""
        return None if self.class_names is None else len(self.class_names)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def without_labels(self) -> "MultiModalDataset":
        """The same samples without labels, keeping the class names (so k): all a label-blind method may see."""
        return MultiModalDataset(views=self.views, labels=None, present=self.present, name=self.name,
                                 class_names=self.class_names, context=self.context)

    @property
    def sparse_views(self) -> tuple:
        """Names of the views held as sparse matrices."""
        return tuple(v for v, x in self.views.items() if _sp.issparse(x))

    def dense_bytes(self) -> int:
        """Bytes the sparse views would take as dense float32 arrays (0 when every view is dense)."""
        return sum(4 * self.n_samples * self.dims[v] for v in self.sparse_views)

    def densified(self, max_bytes: int | None = None) -> "MultiModalDataset":
        """The same data set with every sparse view as a dense float32 array (itself when none is sparse).

        Raises DataError, stating the memory needed, when the dense copies would exceed ``max_bytes``
        (default :data:`MAX_DENSE_BYTES`).
        """
        if not self.sparse_views:
            return self
        limit = MAX_DENSE_BYTES if max_bytes is None else max_bytes
        need = self.dense_bytes()
        if need > limit:
            shapes = ", ".join(f"{v!r} {self.n_samples}x{self.dims[v]}" for v in self.sparse_views)
            raise DataError(f"{self.name}: sparse view(s) {shapes} would need {need / 2**20:.0f} MiB as dense float32, "
                            f"over the {limit / 2**20:.0f} MiB limit; use k-means (it keeps them sparse) or reduce the "
                            f"features first (e.g. sklearn.decomposition.TruncatedSVD)")
        views = {v: (x.toarray() if _sp.issparse(x) else x) for v, x in self.views.items()}
        return self.replace(views=views)

    @property
    def view_names(self) -> tuple:
        return tuple(self.views)

    @property
    def dims(self) -> dict:
        return {v: int(x.shape[1]) for v, x in self.views.items()}

    @property
    def complete(self) -> np.ndarray:
        """Bool mask of samples that have every view."""
        return np.logical_and.reduce([m for m in self.present.values()])

    def subset(self, index, name: str | None = None) -> "MultiModalDataset":
        """Rows ``index`` as a new dataset; labels are re-mapped to 0..k'-1 if classes drop out."""
        index = np.asarray(index)
        if self.labels is None:
            labels, class_names = None, self.class_names
        else:
            classes, labels = np.unique(self.labels[index], return_inverse=True)
            class_names = tuple(self.class_names[c] for c in classes)
        return MultiModalDataset(
            views={v: x[index] for v, x in self.views.items()},
            labels=labels,
            present={v: m[index] for v, m in self.present.items()},
            name=name or self.name,
            class_names=class_names,
            context=self.context,
        )

    def replace(self, **changes) -> "MultiModalDataset":
        """A new, validated dataset with some fields changed (views, labels, present, name, class_names, context)."""
        fields = dict(views=self.views, labels=self.labels, present=self.present, name=self.name,
                      class_names=self.class_names, context=self.context)
        fields.update(changes)
        return MultiModalDataset(**fields)

    def concatenated(self, fill: float = 0.0) -> np.ndarray:
        """All views side by side, ``(n, sum d)``, with missing rows filled by ``fill`` (baselines)."""
        parts = [np.where(self.present[v][:, None], x.toarray() if _sp.issparse(x) else x, fill) for v, x in self.views.items()]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def __repr__(self) -> str:
        dims = ", ".join(f"{v}={d}" for v, d in self.dims.items())
        miss = {v: int((~m).sum()) for v, m in self.present.items() if not m.all()}
        extra = f", missing={miss}" if miss else ""
        k = "unlabelled" if self.labels is None else f"k={self.n_clusters}"
        return f"MultiModalDataset({self.name!r}, n={self.n_samples}, {k}, dims=({dims}){extra})"


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _checked_sparse(x, mask: np.ndarray, name: str, view: str):
    """A sparse view as a float32 CSR array with read-only buffers; non-finite stored values in present rows raise."""
    x = _sp.csr_array(x, dtype=np.float32, copy=True)
    x.sum_duplicates()
    if max(x.nnz, *x.shape) < np.iinfo(np.int32).max:
        # 32-bit indices where they fit: h5py (MATLAB v7.3) gives 64-bit ones, which scikit-learn's k-means refuses
        x.indices, x.indptr = x.indices.astype(np.int32), x.indptr.astype(np.int32)
    bad = ~np.isfinite(x.data)
    if bad.any():
        rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))[bad]
        cols = x.indices[bad]
        hit = np.flatnonzero(mask[rows])
        if hit.size:
            i = hit[0]
            raise DataError(f"{name}: view {view!r} row {int(rows[i])} column {int(cols[i])} is {x.data[bad][i]} "
                            f"(NaN or inf: non-finite) although the view is marked present")
    for a in (x.data, x.indices, x.indptr):
        _read_only(a)
    return x


def _rows_of(views, name: str) -> int:
    """Sample count of unlabelled data: the first view's rows (every view is checked against it)."""
    first = next(iter(views.values()))
    first = first if _sp.issparse(first) else np.asarray(first)
    if first.ndim != 2:
        raise DataError(f"{name}: view {next(iter(views))!r} must be 2-d (n, d), got shape {first.shape}")
    if first.shape[0] == 0:
        raise DataError(f"{name}: no samples")
    return int(first.shape[0])


def _checked_labels(raw, name: str) -> np.ndarray:
    """Labels as int64 0..k-1 with every class used; raises DataError naming the problem."""
    labels = np.asarray(raw)
    if labels.ndim == 2 and 1 in labels.shape:
        labels = labels.ravel()
    if labels.ndim != 1:
        raise DataError(f"{name}: labels must be 1-d, got shape {labels.shape}")
    if labels.shape[0] == 0:
        raise DataError(f"{name}: no samples")
    if not np.issubdtype(labels.dtype, np.integer):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))):
            raise DataError(f"{name}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        row = int(np.argmin(labels))
        raise DataError(f"{name}: label {labels[row]} at row {row} is negative; labels must be 0..k-1")
    unused = np.setdiff1d(np.arange(int(labels.max()) + 1), labels)
    if unused.size:
        raise DataError(f"{name}: labels must be 0..k-1 with every class used; class(es) {unused.tolist()[:10]} never occur")
    return labels


def _checked_context(context, name: str):
    """``None``, or a read-only mapping of name -> read-only numeric array (an already checked one is kept as is)."""
    if context is None:
        return None
    if isinstance(context, MappingProxyType) and all(isinstance(a, np.ndarray) and not a.flags.writeable
                                                  for a in context.values()):
        return context  # from another dataset: already checked and frozen, shared rather than copied
    if not hasattr(context, "items"):
        raise DataError(f"{name}: context must be a dict of name -> array, got {type(context).__name__}")
    out = {}
    for key, value in context.items():
        arr = np.array(value)  # a copy: the caller's array is never aliased
        if not isinstance(key, str) or not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
            raise DataError(f"{name}: context[{key!r}] must be a numeric array under a string name, got {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise DataError(f"{name}: context[{key!r}] holds non-finite values")
        arr.flags.writeable = False
        out[key] = arr
    return MappingProxyType(out)
