"""Sparse views in MultiModalDataset: validated, kept sparse, densified only with a stated memory check."""

import numpy as np
import pytest
from scipy import sparse

from mmclust.data import DataError, MultiModalDataset, incomplete
from mmclust.data import dataset as dataset_module


def _sparse_ds(n=40, d=25, seed=0, labels=True):
    rng = np.random.default_rng(seed)
    x = sparse.random(n, d, density=0.2, random_state=seed, format="coo")
    return MultiModalDataset({"words": x, "dense": rng.normal(size=(n, 3))},
                             labels=np.arange(n) % 4 if labels else None, name="sp")


def test_sparse_view_is_a_read_only_float32_csr_copy():
    raw = sparse.random(10, 6, density=0.4, random_state=1, format="csc", dtype=np.float64)
    ds = MultiModalDataset({"w": raw}, labels=None)
    x = ds.views["w"]
    assert x.format == "csr" and x.dtype == np.float32 and x.shape == (10, 6)
    np.testing.assert_allclose(x.toarray(), raw.toarray(), rtol=1e-6)
    with pytest.raises(ValueError):
        x.data[0] = 5.0
    raw.data[:] = 0.0  # the caller's matrix is not aliased
    assert x.count_nonzero() > 0


def test_non_finite_in_a_present_row_raises_in_a_missing_row_not():
    x = sparse.random(8, 5, density=0.5, random_state=2, format="csr")
    x.data[x.indptr[3]] = np.nan  # first stored value of row 3
    other = np.ones((8, 2))
    with pytest.raises(DataError, match=r"view 'w' row 3 column \d+ is nan"):
        MultiModalDataset({"w": x, "o": other}, labels=None)
    present = {"w": np.arange(8) != 3, "o": np.ones(8, dtype=bool)}
    assert MultiModalDataset({"w": x, "o": other}, labels=None, present=present).n_samples == 8


def test_subset_and_protocols_keep_sparse():
    ds = _sparse_ds()
    sub = ds.subset(np.array([5, 1, 7]))
    assert sparse.issparse(sub.views["words"])
    np.testing.assert_array_equal(sub.views["words"].toarray(), ds.views["words"].toarray()[[5, 1, 7]])
    half = incomplete(ds, 0.5, seed=0)
    assert sparse.issparse(half.views["words"]) and not half.complete.all()


def test_densified_states_memory_and_refuses_above_the_limit(monkeypatch):
    ds = _sparse_ds(n=40, d=25)
    assert ds.sparse_views == ("words",) and ds.dense_bytes() == 40 * 25 * 4
    dense = ds.densified(max_bytes=40 * 25 * 4)
    np.testing.assert_array_equal(dense.views["words"], ds.views["words"].toarray())
    np.testing.assert_array_equal(dense.views["dense"], ds.views["dense"])
    with pytest.raises(DataError, match=r"'words' 40x25 would need 0 MiB as dense float32, over the 0 MiB limit"):
        ds.densified(max_bytes=40 * 25 * 4 - 1)
    monkeypatch.setattr(dataset_module, "MAX_DENSE_BYTES", 100)
    with pytest.raises(DataError, match="use k-means"):
        ds.densified()


def test_concatenated_accepts_sparse():
    ds = _sparse_ds()
    np.testing.assert_allclose(ds.concatenated(), np.hstack([ds.views["words"].toarray(), ds.views["dense"]]))


def test_64_bit_sparse_indices_become_32_bit_and_k_means_takes_them():
    # h5py hands a MATLAB v7.3 sparse matrix over with 64-bit indices; scikit-learn's k-means refuses those
    from mmclust.methods import KMeansBaseline

    x = sparse.random(60, 30, density=0.3, random_state=3, format="csr")
    wide = sparse.csr_array((x.data, x.indices.astype(np.int64), x.indptr.astype(np.int64)), shape=x.shape)
    assert wide.indices.dtype == np.int64
    ds = MultiModalDataset({"w": wide}, labels=None)
    assert ds.views["w"].indices.dtype == np.int32 and ds.views["w"].indptr.dtype == np.int32
    np.testing.assert_allclose(ds.views["w"].toarray(), x.toarray(), rtol=1e-6)
    labels = KMeansBaseline(n_clusters=3, n_init=2, random_state=0).fit(ds).labels_
    assert labels.shape == (60,) and set(labels.tolist()) == {0, 1, 2}


def test_missing_rows_of_a_sparse_view_get_the_views_mean_not_their_stored_values():
    # the incomplete protocol marks rows missing; what is stored there must not reach k-means (it is the hidden view)
    from mmclust.methods.base import select_view

    x = sparse.random(20, 6, density=0.5, random_state=4, format="csr", dtype=np.float64)
    present = np.arange(20) >= 5
    ds = MultiModalDataset({"w": x, "o": np.ones((20, 2))}, labels=None,
                           present={"w": present, "o": np.ones(20, dtype=bool)})
    out = select_view(ds, "w")
    out = out.toarray() if sparse.issparse(out) else out
    dense = x.toarray()
    np.testing.assert_allclose(out[:5], np.tile(dense[present].mean(0), (5, 1)), rtol=1e-5)
    np.testing.assert_allclose(out[5:], dense[5:], rtol=1e-6)
