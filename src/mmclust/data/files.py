"""A user's own multi-view file, in the layouts the field ships: ``.npz``, MATLAB v5 ``.mat``, MATLAB v7.3 ``.mat``.

The registry (:mod:`mmclust.data.registry`) knows the papers' files by name and sha256; this module reads any
file of the same kinds, so a user can cluster data the project has never seen:

* **Views.** A cell array under ``views_key`` or one of the usual keys (:data:`VIEW_KEYS`: ``X``, ``fea``,
  ``data``, ...), its entries named ``view0``, ``view1``, ...; else every 2-d numeric array in the file, named as
  stored (``.npz``: one array per view). Sparse MATLAB matrices stay sparse (CSR).
* **Labels.** The array under ``labels_key`` or one of the usual keys (:data:`LABEL_KEYS`: ``Y``, ``gt``,
  ``truth``, ``labels``, ...), as a vector or one-hot. Optional: a file without labels loads unlabelled. Any integer
  values (MATLAB's 1..k, gaps, negative ids) are mapped to 0..k-1 in sorted order; :attr:`ViewsFile.label_ids`
  keeps the original id of each class and the class names are those ids.
* **Orientation.** The number of samples ``n`` is the label count, or else the one size every view shares; each
  view is read with samples in rows, transposed when its columns are the samples. When this cannot be told (a
  square view whose both sides equal ``n``; views that share both sizes), a DataError says how to choose
  (``samples_in="rows"`` or ``"columns"``).
* **Safety.** Nothing is unpickled: ``.npz`` with ``allow_pickle=False`` (an object array is refused), MATLAB
  files with scipy / h5py, which build arrays, never Python objects. Files over
  :data:`~mmclust.data.registry.MAX_FILE_BYTES` are refused. Every problem is a DataError naming the file,
  the key and what to do.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse as _sp

from .dataset import DataError, MultiModalDataset
from .registry import MAX_FILE_BYTES, sha256_of

__all__ = ["ViewsFile", "load_views_file", "VIEW_KEYS", "LABEL_KEYS", "SAMPLES_IN"]

VIEW_KEYS = ("X", "fea", "data", "views", "features", "x")
LABEL_KEYS = ("Y", "gt", "truth", "labels", "label", "y", "gnd", "target")
SAMPLES_IN = ("auto", "rows", "columns")


@dataclass(frozen=True)
class ViewsFile:
    """A loaded file: the data set, the original label ids (``label_ids[c]`` is class c's value in the file,
    None without labels), the file's sha256, the keys read and notes on what was inferred (for the user)."""

    dataset: MultiModalDataset
    label_ids: np.ndarray | None
    sha256: str
    views_key: str | None
    labels_key: str | None
    notes: tuple


def load_views_file(path, *, views=None, views_key: str | None = None, labels_key: str | None = None,
                    samples_in: str = "auto", name: str | None = None) -> ViewsFile:
    """Read a multi-view file (see the module docstring for the layouts).

    Parameters
    ----------
    path : str or Path — ``.npz`` or ``.mat`` (v5 or v7.3).
    views : sequence of str or int, optional — the views to keep, in this order, by name or by position
        (``["view0", "view2"]`` or ``[0, 2]``); all by default.
    views_key, labels_key : str, optional — where the views / labels are, instead of the usual keys.
    samples_in : "auto", "rows" or "columns" — where the samples are in every view.
    name : str, optional — the data set's name (default: the file's stem).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if samples_in not in SAMPLES_IN:
        raise DataError(f"samples_in must be one of {SAMPLES_IN}, got {samples_in!r}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path.name}: {size} bytes exceeds the {MAX_FILE_BYTES}-byte limit")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        variables = _read_npz(path)
    elif suffix == ".mat":
        variables = _read_mat(path)
    else:
        raise DataError(f"{path.name}: unknown file type {suffix!r}; expected .npz or .mat (MATLAB v5 or v7.3)")
    notes = []
    labels_key, raw_labels = _find_labels(path.name, variables, labels_key, notes)
    views_key, raw_views = _find_views(path.name, variables, views_key, labels_key)
    # the sample count from every view in the file: a chosen view alone may not tell its orientation
    n, labels = _n_and_labels(path.name, raw_views, raw_labels, labels_key, samples_in)
    raw_views = _selected(path.name, raw_views, views)
    oriented = {}
    for view, x in raw_views.items():
        oriented[view], turned = _oriented(path.name, view, x, n, samples_in)
        if turned:
            notes.append(f"view {view!r} stored features x samples {x.shape}: transposed")
    label_ids = None
    class_names = None
    if labels is not None:
        label_ids, labels = np.unique(labels, return_inverse=True)
        class_names = tuple(str(v) for v in label_ids)
        if not np.array_equal(label_ids, np.arange(label_ids.size)):
            notes.append(f"labels {_ids_text(label_ids)} mapped to 0..{label_ids.size - 1}")
    ds = MultiModalDataset(oriented, labels=labels, name=name or path.stem, class_names=class_names)
    return ViewsFile(dataset=ds, label_ids=label_ids, sha256=sha256_of(path), views_key=views_key,
                     labels_key=labels_key, notes=tuple(notes))


# -- reading the containers ------------------------------------------------------------------------------------
def _read_npz(path: Path) -> dict:
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a lone .npy array (or pickle) under an .npz name
            raise DataError(f"{path.name}: a single .npy array, not an .npz archive; save the views with "
                            f"numpy.savez(path, view_a=..., view_b=..., labels=...)")
        with z:
            out = {}
            for key in z.files:
                try:
                    out[key] = z[key]
                except ValueError as err:
                    if "allow_pickle" in str(err):
                        raise DataError(f"{path.name}: array {key!r} is a pickled object array; refused (mmclust never "
                                        f"unpickles data files: save plain numeric arrays)") from None
                    raise
            return out
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error) as err:
        raise DataError(f"{path.name}: cannot be read as .npz ({err})") from err


def _read_mat(path: Path) -> dict:
    """Variables of a MATLAB file: arrays in MATLAB's orientation, sparse matrices, cells as lists; other
    things (structs, strings) as None, so they are never taken for views."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if b"\x89HDF\r\n\x1a\n" in head[:1024]:  # v7.3: HDF5 with a 512-byte MATLAB header
        return _read_mat73(path)
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        m = loadmat(str(path))
    except (MatReadError, ValueError, OSError, TypeError, KeyError, NotImplementedError, EOFError, zlib.error) as err:
        raise DataError(f"{path.name}: cannot be read as a MATLAB file ({err})") from err
    return {k: _from_v5(v) for k, v in m.items() if not k.startswith("__")}


def _from_v5(v):
    if _sp.issparse(v):
        return v
    if isinstance(v, np.ndarray) and v.dtype == object:  # a cell array; MATLAB's linear order is column-major
        return [_from_v5(c) for c in v.ravel(order="F")]
    if isinstance(v, np.ndarray) and (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
        return v
    return None  # struct, char, function handle: not data


def _read_mat73(path: Path) -> dict:
    try:
        import h5py
    except ImportError as err:
        raise DataError(f"{path.name}: a MATLAB v7.3 (HDF5) file; reading it needs h5py (pip install h5py)") from err
    try:
        with h5py.File(path, "r") as f:
            return {k: _from_h5(f, obj) for k, obj in f.items() if not k.startswith("#")}
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"{path.name}: cannot be read as a MATLAB v7.3 (HDF5) file ({err})") from err


def _from_h5(f, obj):
    """One HDF5 object in MATLAB's v7.3 layout: arrays are stored transposed (HDF5 is row-major), cells as
    arrays of object references, sparse matrices as groups of CSC arrays (data, ir, jc)."""
    import h5py

    cls = obj.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if isinstance(obj, h5py.Group):
        if "MATLAB_sparse" in obj.attrs:
            n_rows = int(obj.attrs["MATLAB_sparse"])
            jc = obj["jc"][()].astype(np.int64)
            ir = obj["ir"][()].astype(np.int64) if "ir" in obj else np.zeros(0, np.int64)
            data = obj["data"][()] if "data" in obj else np.zeros(0)
            return _sp.csc_array((data, ir, jc), shape=(n_rows, jc.size - 1))
        return None  # struct
    if cls == "cell":
        return [_from_h5(f, f[ref]) for ref in obj[()].ravel()]
    if cls in ("char", "struct", "function_handle") or "MATLAB_empty" in obj.attrs:
        return None
    arr = obj[()]
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        return None
    return arr.T


# -- what is where --------------------------------------------------------------------------------------------
def _find_labels(fname, variables, labels_key, notes):
    if labels_key is not None:
        if labels_key not in variables:
            raise DataError(f"{fname}: no variable {labels_key!r} for the labels; it holds {_keys(variables)}")
        if variables[labels_key] is None or isinstance(variables[labels_key], list):
            raise DataError(f"{fname}: {labels_key!r} is not a numeric array, so it cannot hold labels")
        return labels_key, variables[labels_key]
    for key in LABEL_KEYS:
        if isinstance(variables.get(key), np.ndarray):
            return key, variables[key]
    notes.append(f"no labels (looked for {', '.join(LABEL_KEYS)}): unlabelled, nothing will be scored")
    return None, None


def _find_views(fname, variables, views_key, labels_key) -> tuple[str | None, dict]:
    if views_key is not None:
        if views_key not in variables:
            raise DataError(f"{fname}: no variable {views_key!r} for the views; it holds {_keys(variables)}")
        if views_key == labels_key:  # the labels as features: every method would score perfectly
            raise DataError(f"{fname}: {views_key!r} holds the labels, so it cannot also be the views; name the "
                            f"views with views_key (--views-key) and the labels with labels_key (--labels-key)")
        return views_key, _views_of(fname, views_key, variables[views_key])
    for key in VIEW_KEYS:
        if isinstance(variables.get(key), list):
            return key, _views_of(fname, key, variables[key])
    named = {k: v for k, v in variables.items()
             if k != labels_key and (_sp.issparse(v) or (isinstance(v, np.ndarray) and v.ndim == 2 and min(v.shape) > 1))}
    if not named:
        raise DataError(f"{fname}: no views found: no cell array under {', '.join(VIEW_KEYS)} and no 2-d numeric arrays "
                        f"(it holds {_keys(variables)}); name them with views_key (--views-key)")
    return None, named


def _views_of(fname, key, value) -> dict:
    if isinstance(value, list):
        views = {}
        for i, x in enumerate(value):
            while isinstance(x, list) and len(x) == 1:  # a cell nested in a 1x1 cell
                x = x[0]
            if x is None or isinstance(x, list) or (not _sp.issparse(x) and np.ndim(x) != 2):
                raise DataError(f"{fname}: {key}{{{i + 1}}} is not a 2-d numeric array (got {type(x).__name__} "
                                f"{getattr(x, 'shape', '')})")
            views[f"view{i}"] = x
        if not views:
            raise DataError(f"{fname}: the cell array {key!r} is empty")
        return views
    if value is None or np.ndim(value) != 2:
        raise DataError(f"{fname}: {key!r} is neither a cell array of views nor a 2-d numeric array")
    return {key: value}


def _selected(fname, views: dict, wanted) -> dict:
    if wanted is None:
        return views
    names = list(views)
    out = {}
    for w in wanted:
        key = w if w in views else None
        if key is None:
            try:
                i = int(w)
            except (TypeError, ValueError):
                i = None
            if i is not None and 0 <= i < len(names):
                key = names[i]
        if key is None:
            raise DataError(f"{fname}: no view {w!r}; the file has {len(names)} views: "
                            + ", ".join(f"{i}={v} {_shape(views[v])}" for i, v in enumerate(names)))
        if key in out:
            raise DataError(f"{fname}: view {key!r} chosen twice")
        out[key] = views[key]
    if not out:
        raise DataError(f"{fname}: no views chosen")
    return out


def _n_and_labels(fname, views, raw_labels, labels_key, samples_in):
    """The sample count and the labels as a 1-d array (None without labels)."""
    shapes = [_shape(x) for x in views.values()]
    if raw_labels is None:
        if samples_in != "auto":
            return shapes[0][0 if samples_in == "rows" else 1], None
        common = set(shapes[0]).intersection(*shapes[1:])
        if len(common) != 1:
            raise DataError(f"{fname}: cannot tell samples from features: the views are {shapes} and there are no "
                            f"labels to count the samples; pass samples_in='rows' or 'columns' (--samples-in)")
        return common.pop(), None
    y = np.asarray(raw_labels.toarray() if _sp.issparse(raw_labels) else raw_labels)
    if y.ndim == 2 and min(y.shape) > 1:  # one-hot, samples along the side the views share
        n_side = [s for s in y.shape if all(s in sh for sh in shapes)]
        if len(n_side) != 1 or not np.isin(y, (0, 1)).all():
            raise DataError(f"{fname}: labels {labels_key!r} have shape {y.shape}: not a vector nor a one-hot matrix")
        y = y.argmax(axis=1 if y.shape[0] == n_side[0] else 0)
    y = y.ravel()
    if y.size == 0:
        raise DataError(f"{fname}: labels {labels_key!r} are empty")
    if not np.issubdtype(y.dtype, np.number) and y.dtype != bool:
        raise DataError(f"{fname}: labels {labels_key!r} are not numeric (dtype {y.dtype})")
    bad = ~np.isfinite(y.astype(np.float64))
    if bad.any():
        raise DataError(f"{fname}: labels {labels_key!r} entry {int(np.argmax(bad))} is {y[np.argmax(bad)]}; labels must be integers")
    if not np.all(y == np.round(y)):
        i = int(np.argmax(y != np.round(y)))
        raise DataError(f"{fname}: labels {labels_key!r} entry {i} is {y[i]}; labels must be integers")
    # an id int64 cannot hold (or a float past 2**53, where neighbouring integers merge) would be cast silently
    # into another class's id
    big = np.abs(y.astype(np.float64)) >= (2.0**53 if y.dtype.kind == "f" else 2.0**63)
    if big.any():
        i = int(np.argmax(big))
        raise DataError(f"{fname}: labels {labels_key!r} entry {i} is {y[i]}: too large for an integer class id")
    return int(y.size), y.astype(np.int64)


def _oriented(fname, view, x, n, samples_in):
    """``(x with samples in rows, whether it was transposed)``."""
    a, b = _shape(x)
    if samples_in == "columns" or (samples_in == "auto" and b == n and a != n):
        x = x.T
        turned = True
    elif samples_in == "rows" or a == n:
        turned = False
    else:
        raise DataError(f"{fname}: view {view!r} has shape {(a, b)}, but there are {n} samples"
                        + (" (labels)" if samples_in == "auto" else ""))
    if samples_in == "auto" and a == b == n:
        raise DataError(f"{fname}: view {view!r} is {a}x{b} with {n} samples: samples could be rows or columns; "
                        f"pass samples_in='rows' or 'columns' (--samples-in)")
    if _shape(x)[0] != n:
        raise DataError(f"{fname}: view {view!r} has {_shape(x)[0]} samples with samples_in={samples_in!r}, "
                        f"the first view has {n}")
    return (x.tocsr() if _sp.issparse(x) else np.asarray(x)), turned


def _shape(x) -> tuple:
    return tuple(int(s) for s in x.shape)


def _keys(variables) -> str:
    def kind(v):
        return "cell" if isinstance(v, list) else "not data" if v is None else "x".join(map(str, _shape(v)))

    return ", ".join(f"{k} ({kind(v)})" for k, v in variables.items()) or "nothing"


def _ids_text(ids) -> str:
    return f"{ids[0]}..{ids[-1]}" if np.array_equal(ids, np.arange(ids[0], ids[0] + ids.size)) else str([int(i) for i in ids[:8]])
