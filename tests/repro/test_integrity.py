"""What may feed a verdict: one configuration, the paper's settings, the current code, failures counted."""

import numpy as np
import pytest

from mmclust.data import apply_split, parse_split, train_test_split
from mmclust.data import make_multiview_blobs
from mmclust.methods import METHODS, KMeansBaseline, MultiModalClusterer
from mmclust.repro import code_identity, report
from mmclust.repro import runner as runner_mod
from mmclust.repro.report import compare, configuration_runs
from mmclust.repro.runner import RunSpec, config_id_of, execute_run, run_id_of
from mmclust.repro.store import ResultStore

from .test_runner import toy_refs


@pytest.fixture(autouse=True)
def _fresh_identity_caches():
    report._paper_config.cache_clear()
    yield
    report._paper_config.cache_clear()


def _runs(store, seeds, rate=0.1, **kw):
    for s in seeds:
        execute_run(RunSpec("kmeans", "synthetic", variant="concat", protocol="incomplete", missing_rate=rate, seed=s, **kw),
                    store=store)


def test_a_changed_default_starts_a_new_configuration_and_old_runs_are_never_averaged_in(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "r.db")
    _runs(store, range(3))  # n_init = 20 (the default)
    monkeypatch.setattr(KMeansBaseline, "params_for_dataset", classmethod(lambda cls, name: {"n_init": 2}), raising=False)
    _runs(store, range(3))  # the "same" runs after a default changed: other parameters, another configuration
    assert len(store.query()) == 6 and len({r["config_id"] for r in store.query()}) == 2
    got = configuration_runs(store, "kmeans", "concat", "synthetic", "incomplete", 0.1)
    assert len(got["rows"]) == 3 and all(r["params"]["n_init"] == 2 for r in got["rows"]) and got["stale"] == 3
    row = compare(str(toy_refs(tmp_path, rates=(0.1,), claim=False)), store)
    assert row["rows"][0]["n"] == 3 and row["stale"] == 3


def test_overridden_runs_never_reach_a_verdict_or_the_summary(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    _runs(store, range(3), overrides={"n_init": 1})
    cmp = compare(str(toy_refs(tmp_path, rates=(0.1,), claim=False)), store)
    row = cmp["rows"][0]
    assert row["n"] == 0 and row["verdict"] == "inconclusive" and "no runs at the paper's settings" in row["detail"]
    assert cmp["summary"] == {"inconclusive": 1}
    (other,) = cmp["other_configs"]
    assert other["overrides"] == {"n_init": 1} and len(other["rows"]) == 3


def test_a_code_change_starts_new_runs_and_leaves_old_ones_stale(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "r.db")
    _runs(store, range(3))
    spec = RunSpec("kmeans", "synthetic", variant="concat", protocol="incomplete", missing_rate=0.1, seed=0)
    old_run, old_config = run_id_of(spec), config_id_of(spec)
    monkeypatch.setattr(runner_mod, "code_fingerprint", lambda module, name=None: "other-code")
    assert run_id_of(spec) != old_run and config_id_of(spec) != old_config
    assert not execute_run(spec, store=store).get("skipped")  # recomputed, not served from the old row
    got = configuration_runs(store, "kmeans", "concat", "synthetic", "incomplete", 0.1)
    assert len(got["rows"]) == 1 and got["stale"] == 3


def test_e2e_store_with_runs_from_other_code_gives_no_verdict(tmp_path, monkeypatch):
    """What MMCLUST_E2E_DB could hold: runs the current code never produced. They feed nothing."""
    store = ResultStore(tmp_path / "e2e.db")
    with monkeypatch.context() as m:
        m.setattr(runner_mod, "code_fingerprint", lambda module, name=None: "yesterday")
        _runs(store, range(5))
    report._paper_config.cache_clear()
    got = configuration_runs(store, "kmeans", "concat", "synthetic", "incomplete", 0.1)
    assert got["rows"] == [] and got["stale"] == 5
    assert compare(str(toy_refs(tmp_path, rates=(0.1,), claim=False)), store)["rows"][0]["verdict"] == "inconclusive"


def test_fingerprint_follows_what_a_method_uses_and_ignores_docstrings(monkeypatch):
    defs = code_identity.code_definitions("mmclust.methods.cigit_c", "CIGITC")
    assert {"mmclust.ops:kl_divergence", "mmclust.methods.nets:mlp", "mmclust.metrics:*",
            "mmclust.data.protocols:*"} <= set(defs)
    assert not any(d.startswith(("mmclust.repro", "mmclust.cli")) for d in defs)
    assert "mmclust.ops:iic_mutual_information" not in defs  # used by another method only
    base = code_identity.code_fingerprint("mmclust.methods.cigit_c", "CIGITC")
    original = code_identity._module
    import ast

    def patched(name, edit):
        if name != "mmclust.ops":
            return original(name)  # None for names that are not modules, as the real one answers
        t, d, i, p = original(name)
        if True:
            d = dict(d)
            d["kl_divergence"] = [edit(n) for n in d["kl_divergence"]]
        return t, d, i, p

    def fingerprint_with(edit):
        code_identity.code_fingerprint.cache_clear()
        code_identity.code_definitions.cache_clear()
        monkeypatch.setattr(code_identity, "_module", lambda name: patched(name, edit))
        try:
            return code_identity.code_fingerprint("mmclust.methods.cigit_c", "CIGITC")
        finally:
            monkeypatch.setattr(code_identity, "_module", original)
            code_identity.code_fingerprint.cache_clear()
            code_identity.code_definitions.cache_clear()

    def new_docstring(node):
        node = ast.parse(ast.unparse(node)).body[0]
        node.body[0] = ast.Expr(ast.Constant("reworded"))
        return node

    def new_body(node):
        node = ast.parse(ast.unparse(node)).body[0]
        node.body.insert(1, ast.parse("p = p * 1.0").body[0])
        return node

    assert fingerprint_with(new_docstring) == base
    assert fingerprint_with(new_body) != base


class _FailsForLateSeeds(MultiModalClusterer):
    VARIANTS = {"full": {}}

    def __init__(self, n_clusters=None, random_state=None):
        self.n_clusters = n_clusters
        self.random_state = random_state

    def fit(self, ds):
        if self.random_state >= 3:
            raise RuntimeError("kaput")
        self.labels_ = KMeansBaseline(n_clusters=self._n_clusters(ds), random_state=0).fit(ds).labels_
        self.history_ = []
        return self


def test_failed_runs_count_against_the_cell(tmp_path, monkeypatch):
    """3 done + 7 failed is `unstable`, however good the survivors look (no survivor bias)."""
    monkeypatch.setitem(METHODS, "kmeans", _FailsForLateSeeds)
    store = ResultStore(tmp_path / "r.db")
    for s in range(10):
        execute_run(RunSpec("kmeans", "synthetic", protocol="incomplete", missing_rate=0.1, seed=s), store=store)
    report._paper_config.cache_clear()
    body = toy_refs(tmp_path, rates=(0.1,), claim=False).read_text().replace('variant = "concat"', 'variant = "full"')
    (tmp_path / "toy.toml").write_text(body)
    row = compare(str(tmp_path / "toy.toml"), store)["rows"][0]
    assert (row["n"], row["failed"], row["verdict"]) == (3, 7, "unstable")


# -- the held-out protocol ----------------------------------------------------------------------------------
def test_split_is_stratified_exact_and_seeded():
    ds = make_multiview_blobs(250, 5, seed=0)
    train, test = train_test_split(ds, test_size=50, seed=3)
    assert (train.n_samples, test.n_samples) == (200, 50)
    assert np.bincount(test.labels).tolist() == [10] * 5
    again = train_test_split(ds, test_size=50, seed=3)[1]
    np.testing.assert_array_equal(again.views["image"], test.views["image"])
    assert not np.array_equal(train_test_split(ds, test_size=50, seed=4)[1].views["image"], test.views["image"])
    assert parse_split({"test": 500}) == "test=500" and parse_split({"test_fraction": 0.25}) == "test_fraction=0.25"
    with pytest.raises(ValueError):
        parse_split({"test": 0})
    with pytest.raises(ValueError):
        apply_split(ds, "test=250", seed=0)  # nothing left to train on


def test_a_split_run_fits_on_train_rows_and_scores_test_rows(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    spec = RunSpec("kmeans", "synthetic", variant="concat", protocol="incomplete", missing_rate=0.3, seed=1, split="test=150")
    res = execute_run(spec, store=store)
    assert res["status"] == "done" and set(res["metrics"]["train"]) >= {"acc", "nmi"}
    assert run_id_of(spec) != run_id_of(RunSpec("kmeans", "synthetic", variant="concat", protocol="incomplete",
                                                missing_rate=0.3, seed=1))
    row = store.get(res["run_id"])
    assert row["split"] == "test=150" and row["config_id"] and row["code_version"]


class _RefusesLabels(MultiModalClusterer):
    """A method that fails loudly if the runner lets labels reach fit."""

    VARIANTS = {"full": {}}

    def __init__(self, n_clusters=None, random_state=None):
        self.n_clusters = n_clusters
        self.random_state = random_state

    def fit(self, ds):
        assert ds.labels is None, "the runner passed labels to fit"
        self.labels_ = KMeansBaseline(n_clusters=self._n_clusters(ds), random_state=0).fit(ds).labels_
        self.history_ = []
        self.fitted_dims_ = dict(ds.dims)
        self._km = KMeansBaseline(n_clusters=self._n_clusters(ds), random_state=0).fit(ds)
        return self

    def predict(self, ds):
        assert ds.labels is None, "the runner passed labels to predict"
        return self._km.predict(ds)


@pytest.mark.parametrize("split", [None, "test=150"])
def test_the_runner_never_shows_labels_to_a_method(tmp_path, monkeypatch, split):
    monkeypatch.setitem(METHODS, "refuses_labels", _RefusesLabels)
    res = execute_run(RunSpec("refuses_labels", "synthetic", seed=0, split=split), store=ResultStore(tmp_path / "r.db"))
    assert res["status"] == "done", res["error"]


def test_a_failure_survives_a_successful_retry(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "r.db")
    monkeypatch.setitem(METHODS, "kmeans", _FailsForLateSeeds)
    spec = RunSpec("kmeans", "synthetic", protocol="incomplete", missing_rate=0.1, seed=5)
    assert execute_run(spec, store=store)["status"] == "failed"
    row = store.get(run_id_of(spec))
    assert row["failures"] == 1
    store.start(row["run_id"], {**spec.identity(), "config_id": row["config_id"]})  # the retry of that run
    store.finish(row["run_id"], status="done", metrics={"acc": 0.9})
    again = store.get(row["run_id"])
    assert again["status"] == "done" and again["failures"] == 1
    assert report._failures(again) == 1


def test_an_old_store_is_upgraded_and_its_rows_are_stale(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the schema before split / config_id / code_version / failures
        conn.executescript("""CREATE TABLE runs (run_id TEXT PRIMARY KEY, method TEXT NOT NULL, variant TEXT NOT NULL,
            dataset TEXT NOT NULL, protocol TEXT NOT NULL, missing_rate REAL, seed INTEGER NOT NULL, overrides TEXT NOT NULL,
            params TEXT NOT NULL, data_sha256 TEXT, status TEXT NOT NULL, metrics TEXT, history TEXT, wall_time_s REAL,
            peak_cpu_mb REAL, peak_cuda_mb REAL, device TEXT, environment TEXT, git_sha TEXT, error TEXT, failed_epoch INTEGER,
            started_at REAL, finished_at REAL);""")
        for s in range(5):
            conn.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         (f"old{s}", "kmeans", "concat", "synthetic", "incomplete", 0.1, s, "{}", "{}", None, "done",
                          '{"acc": 0.9}', None, 1.0, None, None, "cpu", "{}", "x", None, None, 0.0, 1.0))
    store = ResultStore(path)
    cols = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(runs)")}
    assert {"split", "config_id", "code_version", "failures"} <= cols
    got = configuration_runs(store, "kmeans", "concat", "synthetic", "incomplete", 0.1)
    assert got["rows"] == [] and got["stale"] == 5


@pytest.mark.parametrize("split", ["test=100000", "test=600"])
def test_a_split_too_large_is_a_usage_error_before_any_run(tmp_path, split):
    """Refused by validation, so no failed rows pile up into an `unstable` cell."""
    from mmclust.data import DataError

    store = ResultStore(tmp_path / "r.db")
    with pytest.raises(DataError, match="leaves no train or no test rows"):
        execute_run(RunSpec("kmeans", "synthetic", variant="concat", split=split), store=store)
    assert store.query() == []
