"""Protocols keep at least one view per sample and are reproducible by seed."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmclust import DataError
from mmclust.data import incomplete, make_multiview_blobs, mixed_modal, paired, train_test_split
from mmclust.data.protocols import apply_protocol

DS = make_multiview_blobs(200, 4, seed=0)


@given(st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_incomplete_fraction_and_at_least_one_view(rate, seed):
    out = incomplete(DS, rate, seed)
    n_incomplete = int((~out.complete).sum())
    assert n_incomplete == round(rate * DS.n_samples)
    assert (out.present["image"] | out.present["text"]).all()
    # features untouched, only masks change
    assert np.array_equal(out.views["image"], DS.views["image"])
    again = incomplete(DS, rate, seed)
    assert all(np.array_equal(out.present[v], again.present[v]) for v in DS.views)


def test_incomplete_drops_both_views_about_evenly():
    out = incomplete(DS, 0.5, 0)
    lost_img, lost_txt = (~out.present["image"]).sum(), (~out.present["text"]).sum()
    assert lost_img + lost_txt == 100 and 30 < lost_img < 70


@given(st.integers(0, 10_000))
def test_mixed_modal_exactly_one_view(seed):
    out = mixed_modal(DS, seed)
    assert (out.present["image"] ^ out.present["text"]).all()
    assert np.array_equal(mixed_modal(DS, seed).present["image"], out.present["image"])


def test_protocol_errors():
    with pytest.raises(DataError, match="missing_rate must be in"):
        incomplete(DS, 1.5, 0)
    half = incomplete(DS, 0.5, 0)
    with pytest.raises(DataError, match="needs every view"):
        paired(half)
    with pytest.raises(DataError, match="unknown protocol 'odd'"):
        apply_protocol(DS, "odd", 0)
    one = DS.replace(views={"image": DS.views["image"]}, present=None)
    with pytest.raises(DataError, match="at least two views"):
        mixed_modal(one, 0)


def test_train_test_split_stratified_and_fixed():
    train, test = train_test_split(DS, test_size=0.3, seed=1)
    assert train.n_samples + test.n_samples == 200 and test.n_samples == 60
    assert np.bincount(test.labels).tolist() == [15, 15, 15, 15]
    tr2, te2 = train_test_split(DS, test_index=[0, 5, 7])
    assert te2.n_samples == 3 and tr2.n_samples == 197
    with pytest.raises(DataError, match="duplicate"):
        train_test_split(DS, test_index=[1, 1])
    with pytest.raises(DataError, match="test_size"):
        train_test_split(DS, test_size=1.2)
