"""Usage validation: typed overrides, one constraints table per estimator, seeds, devices, data problems."""

import numpy as np
import pytest

from mmclust.data import DataError, make_multiview_blobs
from mmclust.methods import METHODS, DivergenceError, KMeansBaseline
from mmclust.methods.base import check_float32_scale
from mmclust.repro.runner import RunSpec
from mmclust.repro.validate import (check_count, check_device, check_params, check_seed, data_problem, parameter_constraints,
                                    parse_override)


@pytest.mark.parametrize("text,default,expected", [
    ("False", False, False), ("false", True, False), ("0", True, False), ("TRUE", False, True), ("1", False, True),
    ("20", 5, 20), (" 7 ", 5, 7), ("-3", 5, -3),  # typed here; the range is the table's job
    ("1e-3", 0.1, 0.001), ("2", 0.1, 2.0),
    ("none", None, None), ("3", None, 3), ("2.5", None, 2.5),
    ("256,128", (1, 2), (256, 128)), ("[64]", (1,), (64,)), ("(8, 4)", (1, 2), (8, 4)),
    ("image", "concat", "image"),
])
def test_override_strings_are_typed_by_the_default(text, default, expected):
    got = parse_override("p", text, default)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("text,default,says", [
    ("yes", False, "a boolean (true/false/1/0)"), ("Fals", False, "a boolean"), ("2", False, "a boolean"),
    ("abc", 5, "an integer"), ("2.5", 5, "an integer"), ("", 5, "an integer"),
    ("abc", 0.1, "a finite number"), ("nan", 0.1, "a finite number"), ("inf", 0.1, "a finite number"),
    ("a,b", (1, 2), "a list of integers"),
])
def test_bad_override_strings_name_key_value_and_type(text, default, says):
    with pytest.raises(DataError) as err:
        parse_override("p", text, default)
    assert f"--set p={text}: 'p' expects {says}" in str(err.value) and repr(text) in str(err.value)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_estimator_has_a_table_its_defaults_satisfy(name):
    cls = METHODS[name]
    table = parameter_constraints(cls)
    assert set(table) == set(cls().get_params())
    check_params(cls, cls().get_params())
    for variant in getattr(cls, "VARIANTS", {"full": {}}):
        RunSpec(name, "synthetic", variant=variant).validate()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_papers_own_settings_pass_for_every_variant_and_data_set(name):
    """params_for_dataset x VARIANTS for every registered data set (the user-supplied ones included, such as
    DM2C's NUS-WIDE generators with no hidden layer) are settings the papers use: never a usage error."""
    from mmclust.data.registry import REGISTRY

    cls = METHODS[name]
    for dataset in REGISTRY:
        for variant, flags in getattr(cls, "VARIANTS", {"full": {}}).items():
            params = {**cls().get_params(), **getattr(cls, "params_for_dataset", lambda n: {})(dataset), **flags}
            check_params(cls, params)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_estimator_refuses_bad_shared_parameters(name):
    cls = METHODS[name]
    params = cls().get_params()
    bad = {"n_clusters": 1, "random_state": -1, "max_epochs": 0, "batch_size": 0, "lr": 0.0, "verbose": "False",
           "pretrain_epochs": -1, "image_hidden": (256, 0)}
    tried = 0
    for key, value in bad.items():
        if key in params:
            tried += 1
            with pytest.raises(DataError, match=key):
                check_params(cls, {**params, key: value})
    assert tried >= 2


def test_n_clusters_must_be_an_integer_of_at_least_two_or_none():
    for ok in (None, 2, np.int64(7)):
        check_params(KMeansBaseline, {"n_clusters": ok})
    for bad in (0, 1, 2.5, True, "3"):
        with pytest.raises(DataError, match="'n_clusters' parameter of KMeansBaseline must be an int in the range"):
            check_params(KMeansBaseline, {"n_clusters": bad})


def test_seed_count_and_device_checks():
    assert check_seed(0) == 0 and check_seed(2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**32, 1.5, True, "3"):
        with pytest.raises(DataError, match="seed must be an integer"):
            check_seed(bad)
    assert check_count("--jobs", 1) == 1 and check_count("--max-epochs", None) is None
    for bad in (0, -1, True):
        with pytest.raises(DataError, match="--jobs must be an integer >= 1"):
            check_count("--jobs", bad)
    assert check_device("cpu") == "cpu" and check_device("auto") == "auto"
    assert check_device("cuda:3", available=False) == "cuda:3"  # a valid name; presence is checked where it runs
    for bad in ("nosuch", "mps", "cpu:x"):
        with pytest.raises(DataError, match="unknown device"):
            check_device(bad, available=False)


def test_data_problem_tells_missing_from_corrupt(tmp_path, monkeypatch, load_real):
    load_real("bdgp")
    from mmclust.data.registry import data_dir

    blob = bytearray((data_dir() / "bdgp.mat").read_bytes())
    monkeypatch.setenv("MMCLUST_DATA", str(tmp_path))
    assert "data file bdgp.mat not found in" in data_problem("bdgp")
    blob[100] ^= 1
    (tmp_path / "bdgp.mat").write_bytes(bytes(blob))
    assert "is corrupt" in data_problem("bdgp") and "not found" not in data_problem("bdgp")
    assert data_problem("synthetic") is None


# -- float32 overflow -------------------------------------------------------------------------------------
def _scaled(scale):
    ds = make_multiview_blobs(120, 3, {"image": 8, "text": 4}, seed=0)
    return ds.replace(views={v: (x * scale).astype(np.float32) for v, x in ds.views.items()})


def test_kmeans_refuses_features_whose_distances_overflow_float32():
    with pytest.raises(DataError, match="overflow float32.*rescale the features"):
        KMeansBaseline(random_state=0).fit(_scaled(1e30))
    # just inside the bound it still clusters into k groups (the bound is not a blanket refusal of large values)
    labels = KMeansBaseline(random_state=0).fit(_scaled(1e15)).labels_
    assert len(np.unique(labels)) == 3


def test_scale_check_bound_is_the_squared_distance_bound():
    dims = 12
    limit = 0.5 * (float(np.finfo(np.float32).max) / dims) ** 0.5
    for factor, refused in ((0.99, False), (1.01, True)):
        ds = _scaled(1.0)
        x = np.zeros_like(ds.views["image"])
        x[0, 0] = limit * factor
        probe = ds.replace(views={"image": x, "text": np.zeros_like(ds.views["text"])})
        if refused:
            with pytest.raises(DataError):
                check_float32_scale(probe)
        else:
            check_float32_scale(probe)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_kmeans_non_finite_inertia_is_a_divergence(monkeypatch):
    import mmclust.methods.baselines as baselines

    monkeypatch.setattr(baselines, "check_float32_scale", lambda ds: None)  # what the scale check cannot foresee
    with pytest.raises(DivergenceError, match="inertia"):
        KMeansBaseline(random_state=0).fit(_scaled(1e30))


def test_a_constraints_table_does_not_change_a_methods_code_fingerprint():
    """A table only refuses values before a run starts: adding one must not turn every stored run stale."""
    import ast

    from mmclust.repro.code_identity import _strip_docstrings

    plain = ast.parse("class M:\n    VARIANTS = {}\n    def fit(self):\n        return 1\n").body[0]
    tabled = ast.parse("class M:\n    VARIANTS = {}\n    _parameter_constraints = {'k': [int]}\n"
                       "    def fit(self):\n        return 1\n").body[0]
    changed = ast.parse("class M:\n    VARIANTS = {}\n    def fit(self):\n        return 2\n").body[0]
    assert ast.dump(_strip_docstrings(plain)) == ast.dump(_strip_docstrings(tabled))
    assert ast.dump(_strip_docstrings(plain)) != ast.dump(_strip_docstrings(changed))
    assert "_parameter_constraints" in vars(METHODS["dm2c"]) and "_parameter_constraints" in vars(METHODS["dmim"])


def test_string_options_are_refused_before_a_run():
    with pytest.raises(DataError, match="'schedule' parameter of DM2C must be a str among"):
        RunSpec("dm2c", "synthetic", overrides={"schedule": "nosuch"}).validate()
    with pytest.raises(DataError, match="'uniform_on' parameter of DMIM"):
        RunSpec("dmim", "synthetic", overrides={"uniform_on": "nosuch"}).validate()



def test_the_runner_refuses_overflowing_features_for_every_method(tmp_path, monkeypatch):
    """Deep methods would only meet a NaN loss; the runner records the clear reason instead, for any method."""
    from mmclust.repro import runner
    from mmclust.repro.store import ResultStore

    monkeypatch.setattr(runner, "_cached_dataset", lambda name: _scaled(1e30))
    store = ResultStore(tmp_path / "r.db")
    res = runner.execute_run(RunSpec("dec", "synthetic", overrides={"max_epochs": 1, "pretrain_epochs": 0}), store=store)
    assert res["status"] == "failed" and "overflow float32" in res["error"]
    assert store.query()[0]["status"] == "failed"


class _OptionalSetting(KMeansBaseline):
    def __init__(self, n_clusters=None, normalize=None):
        self.n_clusters = n_clusters
        self.normalize = normalize


def test_a_none_default_other_than_n_clusters_is_left_to_the_method():
    """None says nothing about the type a parameter takes (an option like normalize="l2"): not refused here."""
    value = parse_override("normalize", "l2", None)
    check_params(_OptionalSetting, {"normalize": value, "n_clusters": None})
    with pytest.raises(DataError):
        check_params(_OptionalSetting, {"normalize": value, "n_clusters": "l2"})


def test_widths_whose_default_is_auto_take_auto_or_integer_lists():
    """CIGIT-C sizes its encoders from the data ("auto") unless told; BDGP's paper widths are tuples."""
    from mmclust.methods import METHODS
    from mmclust.repro.validate import check_params, parse_override

    cls = METHODS["cigit_c"]
    check_params(cls, {"image_hidden": (256, 256), "text_hidden": "auto"})
    assert parse_override("image_hidden", "256,128", "auto") == (256, 128)
    assert parse_override("image_hidden", "auto", "auto") == "auto"
    check_params(cls, {"text_hidden": ()})  # no hidden layer: a linear encoder, a setting (fit runs with it)
    for bad in ({"image_hidden": "big"}, {"image_hidden": (256, 0)}, {"text_hidden": (True,)}):
        with pytest.raises(DataError, match="hidden"):
            check_params(cls, bad)


@pytest.mark.parametrize("name", ["corruption", "momentum"])
def test_fractions_are_below_one(name):
    """corruption 1 drops every input (nothing left to reconstruct from); momentum 1 never takes a step."""
    check_params(METHODS["dec"], {name: 0.0})
    for bad in (1.0, -0.1):
        with pytest.raises(DataError, match=name):
            check_params(METHODS["dec"], {name: bad})


def test_scale_check_reads_only_present_rows():
    """An absent row's stored values are never used (the methods fill them), so they cannot overflow anything."""
    ds = _scaled(1.0)
    x = ds.views["image"].copy()
    x[0, 0] = 1e30
    present = {**ds.present, "image": ds.present["image"].copy()}
    present["image"][0] = False
    check_float32_scale(ds.replace(views={**ds.views, "image": x}, present=present))
    with pytest.raises(DataError, match="overflow float32"):
        check_float32_scale(ds.replace(views={**ds.views, "image": x}))
