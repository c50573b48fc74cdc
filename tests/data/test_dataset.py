"""MultiModalDataset validation: every DataError path names the view, the row and the problem."""

import numpy as np
import pytest

from mmclust import DataError, MultiModalDataset
from mmclust.data import make_multiview_blobs


def _views(n=6):
    return {"image": np.arange(n * 3, dtype=float).reshape(n, 3), "text": np.ones((n, 2))}


def test_valid_dataset_is_read_only_copy():
    img = np.zeros((4, 2))
    ds = MultiModalDataset({"image": img, "text": np.ones((4, 1))}, [0, 1, 0, 1])
    img[0, 0] = 5  # the caller's array is not aliased
    assert ds.views["image"][0, 0] == 0
    assert ds.views["image"].dtype == np.float32 and ds.labels.dtype == np.int64
    with pytest.raises(ValueError):
        ds.views["image"][0, 0] = 1
    assert ds.n_clusters == 2 and ds.complete.all()


@pytest.mark.parametrize("kwargs,msg", [
    (dict(views={}, labels=[0]), "non-empty dict"),
    (dict(views={"image": np.ones((5, 3))}, labels=[0, 1, 0, 1, 0, 1]), "view 'image' has 5 rows but there are 6 labels"),
    (dict(views={"image": np.ones(6)}, labels=[0, 1, 0, 1, 0, 1]), "must be 2-d"),
    (dict(views={"image": np.ones((6, 0))}, labels=[0, 1, 0, 1, 0, 1]), "no features"),
    (dict(views=_views(), labels=[0, 1, 0, 1, 0, -1]), "row 5 is negative"),
    (dict(views=_views(), labels=[0, 2, 0, 2, 0, 2]), r"class\(es\) \[1\] never occur"),
    (dict(views=_views(), labels=[0.5] * 6), "integers"),
    (dict(views=_views(), labels=[]), "no samples"),
    (dict(views=_views(), labels=[0, 1, 0, 1, 0, 1], class_names=("a",)), "1 class names for 2 classes"),
    (dict(views={"image": np.array([["a"]] * 6)}, labels=[0, 1, 0, 1, 0, 1]), "not numeric"),
    (dict(views=_views(), labels=[0, 1, 0, 1, 0, 1], present={"audio": np.ones(6, bool)}), "unknown view"),
    (dict(views=_views(), labels=[0, 1, 0, 1, 0, 1], present={"text": np.ones(5, bool)}), "present\\['text'\\]"),
])
def test_validation_errors(kwargs, msg):
    with pytest.raises(DataError, match=msg):
        MultiModalDataset(**kwargs)


def test_nan_where_present_names_view_row_column():
    v = _views()
    v["text"][3, 1] = np.nan
    with pytest.raises(DataError, match=r"view 'text' row 3 column 1 is nan"):
        MultiModalDataset(v, [0, 1, 0, 1, 0, 1], name="toy")


def test_nan_where_missing_is_fine_and_every_sample_needs_a_view():
    v = _views()
    v["text"][3] = np.nan
    present = {"text": np.array([1, 1, 1, 0, 1, 1], bool)}
    ds = MultiModalDataset(v, [0, 1, 0, 1, 0, 1], present=present)
    assert not ds.complete[3]
    present["image"] = np.array([1, 1, 1, 0, 1, 1], bool)
    with pytest.raises(DataError, match="row 3 has no view present"):
        MultiModalDataset(v, [0, 1, 0, 1, 0, 1], present=present)


def test_subset_remaps_labels_and_concatenated_fills():
    ds = make_multiview_blobs(40, 4, seed=1)
    sub = ds.subset(np.flatnonzero(ds.labels >= 2))
    assert set(sub.labels) == {0, 1} and sub.n_clusters == 2
    x = ds.concatenated()
    assert x.shape == (40, 48)


def test_synthetic_generator_seeded_and_clusterable():
    a, b = make_multiview_blobs(seed=3), make_multiview_blobs(seed=3)
    assert np.array_equal(a.views["image"], b.views["image"]) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(make_multiview_blobs(seed=4).views["image"], a.views["image"])
    assert np.bincount(a.labels).min() == np.bincount(a.labels).max()  # balanced classes


@pytest.mark.parametrize("kwargs,msg", [
    (dict(views={"image": np.ones((5, 3)), "text": np.ones((6, 2))}, labels=None), "view 'text' has 6 rows but the first view has 5"),
    (dict(views={"image": np.ones(6)}, labels=None), "must be 2-d"),
    (dict(views={"image": np.ones((0, 3))}, labels=None), "no samples"),
    (dict(views={"image": np.full((2, 2), np.nan)}, labels=None), "non-finite"),
])
def test_unlabelled_data_is_validated_like_labelled_data(kwargs, msg):
    with pytest.raises(DataError, match=msg):
        MultiModalDataset(**kwargs)


def test_unlabelled_data_keeps_class_count_when_given_and_subsets():
    ds = make_multiview_blobs(30, 3, seed=0)
    blind = ds.without_labels()
    assert blind.labels is None and blind.n_clusters == 3 and not blind.has_labels
    sub = blind.subset(np.arange(10))
    assert sub.labels is None and sub.n_samples == 10
    assert MultiModalDataset(views=ds.views, labels=None).n_clusters is None
