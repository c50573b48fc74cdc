"""The scikit-learn convention: ``parametrize_with_checks`` on every estimator, with each inapplicable check named
and explained, and ``fit`` / ``fit_predict`` / ``predict`` on lists or dicts of arrays (the multi-view form of X)."""

import numpy as np
import pytest
from scipy import sparse
from sklearn.utils.estimator_checks import parametrize_with_checks

from mmclust.data import DataError, make_multiview_blobs
from mmclust.methods import METHODS
from tests.methods.test_label_blindness import FAST

K_IS_ONE = "the check sets n_clusters=1; mmclust refuses k < 2 (one cluster is not a partition to score)"
COMMON = {
    "check_dont_overwrite_parameters": K_IS_ONE,
    "check_methods_subset_invariance": K_IS_ONE,
    "check_fit2d_predict1d": K_IS_ONE,
    "check_fit2d_1sample": K_IS_ONE + " (so the message is about k, not the one sample)",
    "check_fit2d_1feature": K_IS_ONE + " (so the message is about k, not the one feature)",
    "check_n_features_in": "multi-view input: widths are per view (fitted_dims_), there is no single n_features_in_",
    "check_n_features_in_after_fitting": "multi-view input: widths are per view (fitted_dims_), no single n_features_in_",
    "check_dtype_object": "object arrays are refused: views must be numeric arrays (never converted or unpickled)",
    "check_estimators_empty_data_messages": "a view without features is refused with mmclust's message naming the view",
}
ONE_MATRIX = ("takes exactly two views (image, text); scikit-learn's X is one matrix, so the fit is refused "
              "(fit([X_img, X_txt]) is the multi-view form, tested below)")
TWO_VIEW_FITS = (
    "check_clustering", "check_dict_unchanged", "check_estimator_sparse_array", "check_estimator_sparse_matrix",
    "check_estimator_sparse_tag", "check_estimators_dtypes", "check_estimators_fit_returns_self",
    "check_estimators_nan_inf", "check_estimators_overwrite_params", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_fit_check_is_fitted", "check_fit_idempotent",
    "check_fit_score_takes_y", "check_methods_sample_order_invariance", "check_pipeline_consistency",
    "check_positive_only_tag_during_fit", "check_readonly_memmap_input", "check_fit2d_predict1d",
    "check_methods_subset_invariance", "check_dont_overwrite_parameters", "check_n_features_in",
    "check_n_features_in_after_fitting", "check_fit2d_1sample", "check_fit2d_1feature",
)
NO_CONTEXT = ("clusters images against a semantic space of noun embeddings (the data set's read-only context); a plain "
              "matrix carries none, so the fit is refused naming what is missing")
OWN_UNFITTED_ERROR = {"dm2c", "dmim"}  # predict before fit raises their own DataError / RuntimeError


def _name(est) -> str:
    return next(n for n, cls in METHODS.items() if isinstance(est, cls))


def expected_failed_checks(est) -> dict:
    name = _name(est)
    out = dict(COMMON)
    if getattr(type(est), "N_VIEWS", None) == 2:
        out.update({check: ONE_MATRIX for check in TWO_VIEW_FITS})
    if name == "mca":
        out.update({check: NO_CONTEXT for check in TWO_VIEW_FITS})
    if name in OWN_UNFITTED_ERROR:
        out["check_estimators_unfitted"] = "predict before fit raises the method's own error, not NotFittedError"
    return out


@parametrize_with_checks([cls(n_clusters=3, **FAST[name]) for name, cls in METHODS.items()],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)


TWO_VIEWS = make_multiview_blobs(90, 3, dims={"image": 6, "text": 4}, seed=2)


@pytest.mark.parametrize("name", ["kmeans", "dec", "jecl", "cigit_c"])
def test_fit_accepts_lists_and_dicts_of_arrays(name):
    """``fit([X_img, X_txt])`` is ``fit`` on the same views as a data set: same labels, and predict works on lists."""
    xs = [np.asarray(TWO_VIEWS.views[v]) for v in TWO_VIEWS.views]
    params = dict(n_clusters=3, random_state=0, **FAST[name])
    from_ds = METHODS[name](**params).fit(TWO_VIEWS.without_labels()).labels_
    est = METHODS[name](**params)
    from_list = est.fit_predict(xs)
    np.testing.assert_array_equal(from_list, from_ds)
    from_dict = METHODS[name](**params).fit({"image": xs[0], "text": xs[1]}).labels_
    np.testing.assert_array_equal(from_dict, from_ds)
    assert est.predict(xs).shape == (90,)


def test_fit_densifies_sparse_views_for_deep_methods():
    xs = [np.asarray(TWO_VIEWS.views[v]) for v in TWO_VIEWS.views]
    params = dict(n_clusters=3, random_state=0, **FAST["jecl"])
    dense = METHODS["jecl"](**params).fit(xs).labels_
    np.testing.assert_array_equal(METHODS["jecl"](**params).fit([sparse.csr_matrix(xs[0]), xs[1]]).labels_, dense)


def test_unusable_input_is_named():
    with pytest.raises(DataError, match="fit expects a MultiModalDataset, a dict or list of"):
        METHODS["kmeans"](n_clusters=2).fit(np.ones(3))
    with pytest.raises(DataError, match="needs at least 2 views"):
        METHODS["jecl"](n_clusters=2).fit(np.ones((5, 3)))
