"""k-means baselines: views, label-blindness, errors."""

import numpy as np
import pytest

from mmclust import DataError
from mmclust.data import incomplete, make_multiview_blobs
from mmclust.methods import KMeansBaseline, get_method
from mmclust.metrics import acc

DS = make_multiview_blobs(300, 3, dims={"image": 10, "text": 6}, view_noise={"text": 1.5}, seed=3)


@pytest.mark.parametrize("view", ["concat", "image", "text"])
def test_label_blind_and_repeatable(view):
    relabelled = DS.replace(labels=np.array([2, 0, 1])[DS.labels])
    a = KMeansBaseline(view=view, random_state=0).fit(DS)
    b = KMeansBaseline(view=view, random_state=0).fit(relabelled)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.history_ == b.history_


def test_views_differ_in_quality_and_missing_rows_are_mean_filled():
    good = acc(DS.labels, KMeansBaseline(view="image", random_state=0).fit(DS).labels_)
    noisy = acc(DS.labels, KMeansBaseline(view="text", random_state=0).fit(DS).labels_)
    assert good > noisy
    half = incomplete(DS, 0.5, 0)
    views = {v: np.where(half.present[v][:, None], x, np.nan) for v, x in half.views.items()}
    a = KMeansBaseline(random_state=0).fit(half.replace(views=views))
    b = KMeansBaseline(random_state=0).fit(half)
    np.testing.assert_array_equal(a.labels_, b.labels_)  # missing rows never read


def test_errors():
    with pytest.raises(DataError, match="unknown view 'audio'"):
        KMeansBaseline(view="audio").fit(DS)
    with pytest.raises(DataError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(DataError, match="fit expects a MultiModalDataset, a dict or list"):
        KMeansBaseline(n_clusters=2).fit(np.zeros(3))


def test_predict_refuses_views_in_another_order():
    """Equal widths would hide a swap: the fitted order is part of what predict checks."""
    from mmclust.data import MultiModalDataset, make_multiview_blobs

    ds = make_multiview_blobs(60, 3, dims={"image": 5, "text": 5}, seed=0)
    km = KMeansBaseline(n_clusters=3, random_state=0).fit(ds)
    swapped = MultiModalDataset(views={"text": ds.views["text"], "image": ds.views["image"]}, labels=None)
    with pytest.raises(DataError, match="in that order"):
        km.predict(swapped)
