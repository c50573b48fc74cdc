"""k-means preprocessing (``normalize``): equal to scikit-learn's KMeans on the same preprocessed matrix, sparse
views kept sparse, and L2 rows where standardising collapses tf-idf data."""

import numpy as np
import pytest
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler, normalize

from mmclust.data import DataError, MultiModalDataset, make_multiview_blobs
from mmclust.data import dataset as dataset_module
from mmclust.methods import KMeansBaseline, get_method
from mmclust.metrics import acc
from tests.data.mvfiles import tfidf_views

BLOBS = make_multiview_blobs(240, 4, dims={"image": 9, "text": 5}, view_noise={"text": 1.0}, seed=5)


def _tfidf(n=600, seed=0):
    views, y = tfidf_views(n, 6, (800, 500, 300, 200, 100), seed=seed)
    return MultiModalDataset({f"v{i}": v for i, v in enumerate(views)}, labels=y - 1, name="tfidf")


def _by_hand(ds, how):
    """The matrix each preprocessing should hand to k-means, built without mmclust."""
    parts = list(ds.views.values())
    if how == "l2":
        parts = [normalize(p) for p in parts]
    x = sparse.hstack(parts, format="csr") if all(sparse.issparse(p) for p in parts) else np.hstack(parts)
    if how == "standardize":
        x = StandardScaler(with_mean=not sparse.issparse(x)).fit_transform(x)
    return x


@pytest.mark.parametrize("how", [None, "standardize", "l2"])
@pytest.mark.parametrize("data", ["dense", "sparse"])
def test_equals_sklearn_kmeans_on_the_preprocessed_matrix(how, data):
    ds = BLOBS if data == "dense" else _tfidf(200, seed=3)
    k = ds.n_clusters
    for seed in (0, 1):
        ours = KMeansBaseline(normalize=how, n_init=5, random_state=seed).fit(ds)
        ref = KMeans(n_clusters=k, n_init=5, random_state=seed).fit(_by_hand(ds, how))
        np.testing.assert_array_equal(ours.labels_, ref.labels_)
        assert ours.history_[0]["loss"] == pytest.approx(ref.inertia_, rel=1e-5)
        np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(ours.predict(ds), ours.labels_)  # predict preprocesses as fit did


def test_standardize_flag_is_normalize_standardize():
    a = KMeansBaseline(standardize=True, random_state=0).fit(BLOBS)
    b = KMeansBaseline(normalize="standardize", random_state=0).fit(BLOBS)
    np.testing.assert_array_equal(a.labels_, b.labels_)


def test_l2_recovers_tfidf_topics_where_standardize_collapses():
    """Measured on this tf-idf-like fixture (seed 0): ACC raw 0.25, standardize 0.66, l2 1.00 (fixture seeds 1-3:
    raw 0.20-0.23, standardize 0.58-0.84, l2 1.00)."""
    ds = _tfidf()
    scores = {how: acc(ds.labels, KMeansBaseline(normalize=how, random_state=0).fit(ds).labels_)
              for how in (None, "standardize", "l2")}
    assert scores["l2"] > 0.9
    assert scores["l2"] - scores["standardize"] > 0.25 and scores["l2"] - scores[None] > 0.5


def test_sparse_views_stay_sparse_for_kmeans_and_are_densified_for_deep_methods(monkeypatch):
    ds = _tfidf(120, seed=1)
    monkeypatch.setattr(dataset_module, "MAX_DENSE_BYTES", 1024)  # far below the 120 x 1900 dense copy
    assert KMeansBaseline(normalize="l2", random_state=0).fit(ds).labels_.shape == (120,)
    with pytest.raises(DataError, match=r"would need 1 MiB as dense float32, over the 0 MiB limit"):
        get_method("dec", pretrain_epochs=1, max_epochs=1, hidden=(8,), device="cpu").fit(ds)


@pytest.mark.parametrize("params,msg", [
    (dict(normalize="minmax"), "normalize must be one of"),
    (dict(normalize="l2", standardize=True), "standardize=True contradicts normalize='l2'"),
])
def test_bad_normalize(params, msg):
    with pytest.raises(DataError, match=msg):
        KMeansBaseline(**params).fit(BLOBS)
