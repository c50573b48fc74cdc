"""A user's own multi-view file: every loader path (v5 / v7.3 / .npz, dense / sparse, both orientations, labels of
any ids, missing keys, refused pickles, NaN, mismatched n, corrupt files), built in tmp_path in the field's layouts."""

import numpy as np
import pytest
from scipy import sparse

from mmclust.data import DataError
from mmclust.data.files import load_views_file
from tests.data.mvfiles import cell, tfidf_views, write_v5, write_v73


@pytest.fixture
def dense_views(rng):
    """Three dense views of 63 samples, labels 1..21 (each class 3 times), as the X/Y layout holds them."""
    y = np.repeat(np.arange(1, 22), 3)
    return [rng.normal(size=(63, d)) for d in (7, 5, 4)], y


def test_v5_cell_of_dense_views_with_1_based_labels(tmp_path, dense_views):
    views, y = dense_views
    f = load_views_file(write_v5(tmp_path / "x.mat", views, y))
    ds = f.dataset
    assert ds.n_samples == 63 and ds.n_clusters == 21 and ds.dims == {"view0": 7, "view1": 5, "view2": 4}
    np.testing.assert_array_equal(ds.labels, y - 1)
    np.testing.assert_array_equal(f.label_ids, np.arange(1, 22))
    assert ds.class_names[0] == "1" and f.views_key == "X" and f.labels_key == "Y"
    for i, v in enumerate(views):
        np.testing.assert_array_equal(ds.views[f"view{i}"], v.astype(np.float32))
    assert any("1..21 mapped to 0..20" in n for n in f.notes)


def test_v5_cell_of_sparse_views_stays_sparse(tmp_path):
    views, y = tfidf_views(60, 6, (40, 30, 20, 10, 8), seed=1)
    f = load_views_file(write_v5(tmp_path / "t.mat", views, y, key="fea", labels_key="gt"))
    ds = f.dataset
    assert ds.sparse_views == tuple(f"view{i}" for i in range(5)) and f.views_key == "fea" and f.labels_key == "gt"
    x = ds.views["view2"]
    assert sparse.issparse(x) and x.format == "csr" and x.dtype == np.float32 and not x.data.flags.writeable
    np.testing.assert_allclose(x.toarray(), views[2].toarray(), rtol=1e-6)
    np.testing.assert_array_equal(ds.labels, y - 1)
    dense = ds.densified()
    assert not dense.sparse_views and dense.dense_bytes() == 0
    np.testing.assert_array_equal(dense.views["view2"], x.toarray())


def test_v73_hdf5_in_matlab_layout_reads_as_v5(tmp_path, dense_views):
    views, y = dense_views
    sp_view = sparse.random(63, 9, density=0.2, random_state=0, format="csc")
    v5 = load_views_file(write_v5(tmp_path / "a.mat", views + [sp_view], y)).dataset
    v73 = load_views_file(write_v73(tmp_path / "b.mat", {"X": views + [sp_view], "Y": y.reshape(-1, 1).astype(float)})).dataset
    f73 = load_views_file(tmp_path / "b.mat")
    assert not any("transposed" in n for n in f73.notes)  # MATLAB's samples x features, read as such
    assert v73.dims == v5.dims and v73.sparse_views == ("view3",)
    for v in v5.views:
        a, b = v5.views[v], v73.views[v]
        np.testing.assert_array_equal(a.toarray() if sparse.issparse(a) else a, b.toarray() if sparse.issparse(b) else b)
    np.testing.assert_array_equal(v73.labels, v5.labels)


def test_views_stored_features_by_samples_are_transposed(tmp_path, dense_views):
    views, y = dense_views
    f = load_views_file(write_v5(tmp_path / "t.mat", [v.T for v in views], y))
    np.testing.assert_array_equal(f.dataset.views["view1"], views[1].astype(np.float32))
    assert sum("transposed" in n for n in f.notes) == 3
    mixed = load_views_file(write_v73(tmp_path / "m.mat", {"X": [views[0], views[1].T], "Y": y.astype(float)})).dataset
    np.testing.assert_array_equal(mixed.views["view1"], views[1].astype(np.float32))


def test_square_view_is_ambiguous_until_told(tmp_path, rng):
    x = rng.normal(size=(6, 6))
    path = write_v5(tmp_path / "sq.mat", [x, rng.normal(size=(6, 3))], np.arange(6) % 2 + 1)
    with pytest.raises(DataError, match=r"6x6 with 6 samples: samples could be rows or columns; pass samples_in='rows' or 'columns'"):
        load_views_file(path)
    np.testing.assert_array_equal(load_views_file(path, samples_in="rows").dataset.views["view0"], x.astype(np.float32))
    with pytest.raises(DataError, match="view 'view1' has 3 samples"):
        load_views_file(path, samples_in="columns")
    cols = load_views_file(path, samples_in="columns", views=[0]).dataset
    np.testing.assert_array_equal(cols.views["view0"], x.T.astype(np.float32))


def test_unlabelled_orientation_from_the_shared_size(tmp_path, rng):
    np.savez(tmp_path / "u.npz", a=rng.normal(size=(30, 4)), b=rng.normal(size=(7, 30)))
    f = load_views_file(tmp_path / "u.npz")
    assert f.dataset.n_samples == 30 and not f.dataset.has_labels and f.label_ids is None
    assert f.dataset.dims == {"a": 4, "b": 7} and any("no labels" in n for n in f.notes)
    np.savez(tmp_path / "amb.npz", a=rng.normal(size=(30, 4)), b=rng.normal(size=(4, 30)))
    with pytest.raises(DataError, match="cannot tell samples from features"):
        load_views_file(tmp_path / "amb.npz")
    assert load_views_file(tmp_path / "amb.npz", samples_in="rows", views=["a"]).dataset.n_samples == 30


def test_npz_views_labels_and_selection(tmp_path, rng):
    img, txt, extra = rng.normal(size=(12, 5)), rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    np.savez(tmp_path / "d.npz", image=img, text=txt, extra=extra, labels=np.array([10, 20, 30] * 4))
    f = load_views_file(tmp_path / "d.npz")
    assert f.dataset.view_names == ("image", "text", "extra")
    np.testing.assert_array_equal(f.label_ids, [10, 20, 30])
    assert load_views_file(tmp_path / "d.npz", views=["text", "image"]).dataset.view_names == ("text", "image")
    assert load_views_file(tmp_path / "d.npz", views=["2", "0"]).dataset.view_names == ("extra", "image")
    with pytest.raises(DataError, match=r"no view 'audio'; the file has 3 views: 0=image \(12, 5\)"):
        load_views_file(tmp_path / "d.npz", views=["audio"])
    with pytest.raises(DataError, match="chosen twice"):
        load_views_file(tmp_path / "d.npz", views=["0", "image"])


def test_labels_of_any_ids_and_one_hot(tmp_path, rng):
    x = rng.normal(size=(9, 4))
    np.savez(tmp_path / "ids.npz", x=x, y=np.array([-1, 5, 7, 5, -1, 7, 7, 5, -1]))
    f = load_views_file(tmp_path / "ids.npz")
    np.testing.assert_array_equal(f.label_ids, [-1, 5, 7])
    np.testing.assert_array_equal(f.dataset.labels, [0, 1, 2, 1, 0, 2, 2, 1, 0])
    onehot = np.eye(3)[[0, 1, 2, 1, 0, 2, 2, 1, 0]]
    np.savez(tmp_path / "oh.npz", x=x, labels=onehot.T)  # classes x samples
    np.testing.assert_array_equal(load_views_file(tmp_path / "oh.npz").dataset.labels, [0, 1, 2, 1, 0, 2, 2, 1, 0])


def test_label_ids_too_large_to_be_told_apart_are_refused(tmp_path, rng):
    # 1e20 and 3e20 both cast to int64's minimum: one class, silently, before this check
    x = rng.normal(size=(6, 4))
    np.savez(tmp_path / "big.npz", x=x, y=np.array([1e20, 3e20, 1e20, 3e20, 5.0, 5.0]))
    with pytest.raises(DataError, match=r"labels 'y' entry 0 is 1e\+20: too large for an integer class id"):
        load_views_file(tmp_path / "big.npz")
    np.savez(tmp_path / "u64.npz", x=x, y=np.array([2**63 + 1, 1, 1, 2, 2, 1], dtype=np.uint64))
    with pytest.raises(DataError, match="entry 0 is 9223372036854775809: too large"):
        load_views_file(tmp_path / "u64.npz")
    np.savez(tmp_path / "ok.npz", x=x, y=np.array([2.0**52, -3, 2.0**52, -3, 7, 7]))
    f = load_views_file(tmp_path / "ok.npz")  # large but exact ids stay distinct, and the note shows plain numbers
    np.testing.assert_array_equal(f.label_ids, [-3, 7, 2**52])
    assert f"labels [-3, 7, {2**52}] mapped to 0..2" in f.notes


def test_named_arrays_and_explicit_keys(tmp_path, rng):
    from scipy.io import savemat

    a, b = rng.normal(size=(10, 3)), rng.normal(size=(10, 4))
    savemat(tmp_path / "n.mat", {"X1": a, "X2": b, "truth": np.arange(10) % 2 + 1, "note": "hello"})
    f = load_views_file(tmp_path / "n.mat")
    assert f.dataset.view_names == ("X1", "X2") and f.labels_key == "truth"
    savemat(tmp_path / "k.mat", {"feats": cell([a, b]), "cls": np.arange(10) % 2})
    g = load_views_file(tmp_path / "k.mat", views_key="feats", labels_key="cls")
    assert g.dataset.dims == {"view0": 3, "view1": 4} and g.dataset.n_clusters == 2


@pytest.mark.parametrize("kwargs,msg", [
    (dict(labels_key="nope"), r"no variable 'nope' for the labels; it holds X \(cell\), Y \(63x1\)"),
    (dict(views_key="nope"), "no variable 'nope' for the views"),
    (dict(samples_in="diagonal"), "samples_in must be one of"),
])
def test_missing_keys_and_bad_options(tmp_path, dense_views, kwargs, msg):
    views, y = dense_views
    with pytest.raises(DataError, match=msg):
        load_views_file(write_v5(tmp_path / "x.mat", views, y), **kwargs)


def test_the_labels_variable_is_never_also_the_views(tmp_path, dense_views):
    # --views-key Y on a file whose labels are Y: k-means on the labels themselves scored ACC 1.0
    views, y = dense_views
    path = write_v5(tmp_path / "a.mat", views, y)
    with pytest.raises(DataError, match="'Y' holds the labels, so it cannot also be the views"):
        load_views_file(path, views_key="Y")
    np.savez(tmp_path / "b.npz", a=views[0], lab=np.eye(21)[y - 1])
    with pytest.raises(DataError, match="'lab' holds the labels"):
        load_views_file(tmp_path / "b.npz", views_key="lab", labels_key="lab")


def test_a_lone_npy_under_an_npz_name_is_named(tmp_path):
    np.save(tmp_path / "one.npy", np.ones((5, 3)))
    (tmp_path / "one.npz").write_bytes((tmp_path / "one.npy").read_bytes())
    with pytest.raises(DataError, match=r"one.npz: a single .npy array, not an .npz archive"):
        load_views_file(tmp_path / "one.npz")


def test_file_without_views(tmp_path):
    np.savez(tmp_path / "v.npz", labels=np.arange(5), weights=np.ones(5))
    with pytest.raises(DataError, match="no views found"):
        load_views_file(tmp_path / "v.npz")


def test_pickled_object_arrays_refused(tmp_path):
    objs = np.empty(2, dtype=object)
    objs[0], objs[1] = np.ones((3, 2)), np.ones((3, 2))
    np.savez(tmp_path / "p.npz", views=objs, labels=np.arange(3))  # numpy pickles object arrays
    with pytest.raises(DataError, match="array 'views' is a pickled object array; refused"):
        load_views_file(tmp_path / "p.npz")


def test_nan_rows_named(tmp_path, dense_views):
    views, y = dense_views
    views[1][17, 2] = np.nan
    with pytest.raises(DataError, match=r"view 'view1' row 17 column 2 is nan"):
        load_views_file(write_v5(tmp_path / "x.mat", views, y))
    sp = sparse.random(63, 6, density=0.3, random_state=0, format="csr")
    sp.data[sp.indptr[40]] = np.inf  # first stored value of row 40
    with pytest.raises(DataError, match=r"view 'view0' row 40 column \d+ is inf"):
        load_views_file(write_v5(tmp_path / "s.mat", [sp], y))
    with pytest.raises(DataError, match=r"labels 'Y' entry 3 is nan"):
        load_views_file(write_v5(tmp_path / "y.mat", views[:1], np.where(np.arange(63) == 3, np.nan, 1.0)))


def test_mismatched_sample_counts(tmp_path, rng):
    with pytest.raises(DataError, match=r"view 'view1' has shape \(50, 4\), but there are 63 samples \(labels\)"):
        load_views_file(write_v5(tmp_path / "x.mat", [rng.normal(size=(63, 3)), rng.normal(size=(50, 4))], np.ones(63)))
    from scipy.io import savemat

    savemat(tmp_path / "c.mat", {"cube": np.ones((4, 3, 2)), "Y": np.ones(4)})
    with pytest.raises(DataError, match="'cube' is neither a cell array of views nor a 2-d numeric array"):
        load_views_file(tmp_path / "c.mat", views_key="cube")


@pytest.mark.parametrize("name,content,msg", [
    ("bad.mat", b"this is not a MATLAB file at all" * 10, "cannot be read as a MATLAB file"),
    ("bad.npz", b"PK\x03\x04 truncated zip", "cannot be read as .npz"),
    ("bad.h5", b"whatever", "unknown file type '.h5'"),
])
def test_corrupt_files(tmp_path, name, content, msg):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=msg):
        load_views_file(tmp_path / name)


def test_corrupt_v73(tmp_path, dense_views):
    views, y = dense_views
    path = write_v73(tmp_path / "c.mat", {"X": views, "Y": y.astype(float)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="cannot be read as a MATLAB v7.3"):
        load_views_file(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_views_file("no/such/file.mat")


@pytest.mark.parametrize("name,views_key,labels_key", [("scene15", "X", "Y"), ("uci_digits", "fea", "gt")])
def test_real_files_read_as_the_registry_reads_them(name, views_key, labels_key, load_real, data_dir):
    reg = load_real(name)
    f = load_views_file(data_dir / f"{name}.mat")
    assert (f.views_key, f.labels_key) == (views_key, labels_key)
    ds = f.dataset
    assert ds.n_samples == reg.n_samples and ds.n_clusters == reg.n_clusters and len(ds.views) >= 3
    for i, v in enumerate(reg.views):
        np.testing.assert_array_equal(ds.views[f"view{i}"], reg.views[v])
    np.testing.assert_array_equal(ds.labels, reg.labels)
