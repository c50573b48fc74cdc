"""Writers of multi-view files in the field's layouts, for tests (built in tmp_path, never shipped).

``write_v5``: a MATLAB v5 ``.mat`` with a 1 x k cell of views (scipy.io.savemat, cells as object arrays);
``write_v73``: a MATLAB v7.3 ``.mat`` written with h5py in MATLAB's own layout (512-byte header, arrays stored
transposed, cells as references into ``#refs#``, sparse matrices as CSC groups); ``tfidf_views``: sparse
tf-idf-like views of documents from k topics.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def cell(views) -> np.ndarray:
    """A MATLAB 1 x k cell array as scipy.io.savemat writes it."""
    out = np.empty((1, len(views)), dtype=object)
    for i, v in enumerate(views):
        out[0, i] = v
    return out


def write_v5(path, views, labels=None, key="X", labels_key="Y"):
    from scipy.io import savemat

    data = {key: cell(views)}
    if labels is not None:
        data[labels_key] = np.asarray(labels, dtype=np.float64).reshape(-1, 1)
    savemat(str(path), data)
    return path


def write_v73(path, variables: dict):
    """``variables``: name -> ndarray (MATLAB orientation), scipy sparse matrix, or list (a 1 x k cell)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        counter = iter(range(10**6))

        def put(group, name, value):
            if isinstance(value, list):
                handles = [put(refs, f"r{next(counter)}", v).ref for v in value]
                d = group.create_dataset(name, data=np.array(handles, dtype=h5py.ref_dtype).reshape(len(value), 1))
                d.attrs["MATLAB_class"] = np.bytes_("cell")
                return d
            if sparse.issparse(value):
                csc = sparse.csc_matrix(value)
                g = group.create_group(name)
                g.attrs["MATLAB_class"] = np.bytes_("double")
                g.attrs["MATLAB_sparse"] = np.uint64(csc.shape[0])
                g.create_dataset("data", data=csc.data.astype(np.float64))
                g.create_dataset("ir", data=csc.indices.astype(np.uint64))
                g.create_dataset("jc", data=csc.indptr.astype(np.uint64))
                return g
            arr = np.asarray(value)
            d = group.create_dataset(name, data=arr.T)  # MATLAB is column-major: HDF5 holds the transpose
            d.attrs["MATLAB_class"] = np.bytes_("double" if arr.dtype.kind == "f" else "uint8")
            return d

        for name, value in variables.items():
            put(f, name, value)
    with open(path, "r+b") as fh:  # MATLAB's text header in the user block
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116, b" "))
    return path


def tfidf_views(n: int, k: int, dims, seed: int = 0, words=(5, 100), concentration: float = 0.05, background=0.7):
    """Sparse tf-idf views (CSR, no row normalisation) of ``n`` short documents from ``k`` topics, and labels 1..k.

    Each word is drawn from a Zipf-shaped background shared by all topics (weight ``background``) or from the
    topic's own few words (Dirichlet with small concentration); document lengths vary log-uniformly over
    ``words``, so raw rows differ in length and most words are rare, as in real tf-idf files.
    """
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)
    views = []
    for d in dims:
        common = rng.zipf(1.3, d).astype(float)
        topics = (1 - background) * rng.dirichlet(np.full(d, concentration), size=k) + background * common / common.sum()
        lengths = np.exp(rng.uniform(np.log(words[0]), np.log(words[1]), size=n)).astype(int)
        counts = np.stack([rng.multinomial(m, topics[c]) for m, c in zip(lengths, y)])
        views.append(sparse.csr_matrix(TfidfTransformer(norm=None).fit_transform(counts)))
    return views, y + 1
