"""Runner, store, engines and report, exercised with k-means on the synthetic generator."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mmclust.methods import METHODS, DivergenceError, MultiModalClusterer
from mmclust.repro.report import compare, write_report
from mmclust.repro.runner import RunSpec, build_grid, execute_run, reproduce, run_id_of
from mmclust.repro.store import ResultStore

TOY = """
[meta]
paper = "toy"
unit = "fraction"
direction = "higher"

[[result]]
table = "1"
method = "kmeans"
variant = "concat"
dataset = "synthetic"
protocol = "incomplete"
missing_rate = {rate}
metric = "acc"
printed = "{acc}"
value = {acc}
runs = 5
"""


def toy_refs(tmp_path, rates=(0.1, 0.5), acc=0.9, claim=True):
    body = '[meta]\npaper = "toy"\nunit = "fraction"\ndirection = "higher"\n' + "".join(
        TOY.split("direction = \"higher\"\n", 1)[1].format(rate=r, acc=acc) for r in rates)
    if claim:
        body += textwrap.dedent("""
            [[claim]]
            id = "falls"
            kind = "decreasing"
            metric = "acc"
            tolerance = 0.5
            protocol = "incomplete"
            missing_rates = [0.1, 0.5]
            datasets = ["synthetic"]
            subject = { method = "kmeans", variant = "concat" }
            text = "ACC falls with the missing rate"
            source = "toy"
            """)
    path = tmp_path / "toy.toml"
    path.write_text(body)
    return path


def test_store_roundtrip_and_one_row_per_run(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    spec = RunSpec("kmeans", "synthetic", variant="concat", seed=3)
    res = execute_run(spec, store=store)
    assert res["status"] == "done" and 0.5 < res["metrics"]["acc"] <= 1
    row = store.get(res["run_id"])
    assert row["status"] == "done" and row["params"]["random_state"] == 3 and row["data_sha256"].startswith("generated")
    assert row["environment"]["torch"] and row["git_sha"] and row["wall_time_s"] > 0 and row["peak_cpu_mb"] > 0
    assert row["environment"]["fused_kernels"] in {"on", "off", "unused", "failed"}
    again = execute_run(spec, store=store)
    assert again.get("skipped") and len(store.query()) == 1
    with sqlite3.connect(tmp_path / "r.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_run_identity_depends_on_resolved_params_not_spelling():
    a = RunSpec("kmeans", "synthetic", variant="concat")
    assert run_id_of(a) == run_id_of(RunSpec("kmeans", "synthetic", variant="concat", overrides={"n_init": 20}))
    assert run_id_of(a) != run_id_of(RunSpec("kmeans", "synthetic", variant="concat", overrides={"n_init": 5}))
    assert run_id_of(a) != run_id_of(RunSpec("kmeans", "synthetic", variant="concat", seed=1))
    assert run_id_of(a) == run_id_of(RunSpec("kmeans", "synthetic", variant="concat", device="cpu"))


class _Boom(MultiModalClusterer):
    VARIANTS = {"full": {}}

    def __init__(self, when="diverge", random_state=None):
        self.when = when
        self.random_state = random_state

    def fit(self, ds):
        self.history_ = [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": float("nan")}]
        if self.when == "diverge":
            raise DivergenceError("loss became nan", epoch=1)
        raise RuntimeError("kaput")


@pytest.mark.parametrize("when,msg,epoch", [("diverge", "diverged: loss became nan", 1), ("raise", "RuntimeError: kaput", 2)])
def test_failed_run_is_recorded_and_sweep_goes_on(tmp_path, monkeypatch, when, msg, epoch):
    monkeypatch.setitem(METHODS, "boom", _Boom)
    store = ResultStore(tmp_path / "r.db")
    res = execute_run(RunSpec("boom", "synthetic", overrides={"when": when}), store=store)
    row = store.get(res["run_id"])
    assert row["status"] == "failed" and row["error"].startswith(msg) and row["failed_epoch"] == epoch
    assert row["history"][1]["loss"] is None  # NaN stored as null, the JSON stays valid
    ok = execute_run(RunSpec("kmeans", "synthetic"), store=store)
    assert ok["status"] == "done"


def test_reproduce_skips_stored_runs_and_report(tmp_path):
    refs = toy_refs(tmp_path)
    store = ResultStore(tmp_path / "r.db")
    first = reproduce(str(refs), runs=3, store=store, quiet=True)
    assert (first["planned"], first["done"], first["skipped"]) == (6, 6, 0)
    second = reproduce(str(refs), runs=4, store=store, quiet=True)
    assert (second["done"], second["skipped"]) == (2, 6)
    cmp = compare(str(refs), store)
    row = cmp["rows"][0]
    assert row["n"] == 4 and row["failed"] == 0 and row["verdict"] in ("reproduced", "below", "above", "inconclusive")
    # "ACC falls by more than 0.5" cannot hold for k-means at 10 % vs 50 % missing: the steps are level within it
    assert cmp["claims"][0]["results"][0]["outcome"] == "level"
    paths = write_report(str(refs), store, tmp_path / "rep")
    names = {p.name for p in paths}
    assert {"toy.md", "toy.html", "toy_missing_rate.png", "toy_cells.png"} <= names
    md = (tmp_path / "rep" / "toy.md").read_text()
    assert "**Summary**" in md and "kmeans" in md and "falls" in md and "(n=4, 0 failed)" in md


def test_report_verdict_tracks_published_value(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    reproduce(str(toy_refs(tmp_path, rates=(0.1,), acc=0.99, claim=False)), runs=5, store=store, quiet=True)
    row = compare(str(tmp_path / "toy.toml"), store)["rows"][0]
    mean, h = row["mean"], row["assessment"].half_width
    assert h < 0.02, "k-means on the toy data must be stable enough for the interval to fit the band"
    for acc, expected in ((round(mean, 2), "reproduced"), (round(mean + 0.1, 2), "below"), (round(mean - 0.1, 2), "above")):
        assert compare(str(toy_refs(tmp_path, rates=(0.1,), acc=acc, claim=False)), store)["rows"][0]["verdict"] == expected


def test_dask_engine_matches_local(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    refs = toy_refs(tmp_path, claim=False)
    local, remote = ResultStore(tmp_path / "local.db"), ResultStore(tmp_path / "dask.db")
    reproduce(str(refs), runs=2, store=local, quiet=True)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        summary = reproduce(str(refs), runs=2, store=remote, engine="dask", client=client, quiet=True)
    assert summary["done"] == 4
    a = {r["run_id"]: r["metrics"] for r in local.query()}
    b = {r["run_id"]: r["metrics"] for r in remote.query()}
    assert a == b


def test_parallel_local_engine(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    out = reproduce(str(toy_refs(tmp_path, claim=False)), runs=2, store=store, n_jobs=2, quiet=True)
    assert out["done"] == 4 and len(store.query(status="done")) == 4


def test_resume_after_sigkill(tmp_path):
    """A sweep killed with SIGKILL mid-run loses no finished run and repeats none when restarted, and the run it
    had claimed is taken over at once. The sweep kills itself inside its 6th fit (no polling, no sleeps)."""
    refs = toy_refs(tmp_path, rates=(0.1, 0.3, 0.5, 0.7), claim=False)
    db = tmp_path / "r.db"
    code = textwrap.dedent(f"""
        import os, signal
        from mmclust.repro import runner
        from mmclust.repro.store import ResultStore
        real, calls = runner._compute, []

        def compute(*args, **kwargs):
            calls.append(1)
            if len(calls) == 6:  # mid-run: this run is claimed (running, owned by this process), five are done
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        runner._compute = compute
        runner.reproduce({str(refs)!r}, runs=15, store=ResultStore({str(db)!r}), quiet=True)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    assert proc.wait(timeout=600) == -signal.SIGKILL
    store = ResultStore(db)
    before = {r["run_id"]: r["finished_at"] for r in store.query(status="done")}
    (claimed,) = store.query(status="running")
    assert len(before) == 5 and claimed["owner"].split(":")[1] == str(proc.pid)
    summary = reproduce(str(refs), runs=15, store=store, quiet=True)
    assert summary["skipped"] == 5 and summary["done"] == 55 and summary["taken"] == 0
    after = {r["run_id"]: r["finished_at"] for r in store.query(status="done")}
    assert len(after) == 60 and all(after[k] == v for k, v in before.items())  # none repeated
    assert claimed["run_id"] in after and not store.query(status="running")


def test_grid_reports_absent_data_and_unimplemented(tmp_path):
    specs, not_run = build_grid("jecl", runs=1)
    whys = {(n["method"], n["dataset"]): n["why"] for n in not_run}
    assert whys[("kmeans", "coco_cross")] == "data_absent"
    assert any("jecl_coco_cross.npz" in n["detail"] for n in not_run)
    assert all(s.dataset in ("uci_digits", "scene15", "wiki_sift_lda") for s in specs)
    # one (dataset, seed) after another, so the pre-training a DEC/JECL run memoises serves the next ones
    order = [(s.dataset, s.seed) for s in specs]
    from mmclust.data.registry import status

    present = [d for d in ("uci_digits", "scene15", "wiki_sift_lda") if status(d) == "present"]
    assert order == sorted(order) and len(specs) == 6 * len(present)  # 4 JECL variants + DEC on each view


def test_cigit_c_bdgp_grid_primary_reading_with_split_and_findings_on_request(load_real):
    load_real("bdgp")
    specs, _ = build_grid("cigit_c", datasets=["bdgp"], runs=2)
    configs = {(s.method, s.dataset, s.protocol, s.missing_rate, s.split) for s in specs}
    primary = {(m, "bdgp", "incomplete", rate, "test=500") for m in ("cigit_c", "kmeans") for rate in (0.1, 0.3, 0.5, 0.7)}
    assert configs == primary and len(specs) == 2 * 8  # the paper's 2000/500 split; the claim's k-means baseline
    specs, _ = build_grid("cigit_c", datasets=["bdgp"], runs=2, findings=True)
    configs = {(s.method, s.dataset, s.protocol, s.missing_rate, s.split) for s in specs}
    for rate in (0.1, 0.3, 0.5, 0.7):  # other readings: the first 1000 columns, and all rows without the split
        assert {("cigit_c", "bdgp_lateral", "incomplete", rate, "test=500"), ("cigit_c", "bdgp", "incomplete", rate, None)} <= configs
    assert len(specs) == 2 * 16


def test_report_lists_every_metric_of_claims_run_on_stand_in_data(tmp_path):
    refs = tmp_path / "toy.toml"
    # Table-like cell on data that are absent here; the claim names a stand-in that is present
    cell = TOY.replace('"synthetic"', '"coco_cross"').replace('"incomplete"\nmissing_rate = {rate}', '"paired"').format(acc=0.9)
    refs.write_text(cell + textwrap.dedent("""
        [[claim]]
        id = "concat_beats_image"
        kind = "greater"
        metric = "acc"
        tolerance = 0.01
        protocol = "paired"
        datasets = ["coco_cross"]
        stand_ins = ["synthetic"]
        better = { method = "kmeans", variant = "concat" }
        worse = [{ method = "kmeans", variant = "image" }]
        text = "both views beat one"
        source = "toy"
        """))
    store = ResultStore(tmp_path / "r.db")
    summary = reproduce(str(refs), runs=3, store=store, quiet=True)
    assert summary["done"] == 6 and summary["cells_not_run"][0]["why"] == "data_absent"
    cmp = compare(str(refs), store)
    found = {(f["method"], f["variant"]): f for f in cmp["findings"]}
    assert set(found) == {("kmeans", "concat"), ("kmeans", "image")}
    image_nmi = [r["metrics"]["nmi"] for r in store.query(method="kmeans", variant="image")]
    assert len(image_nmi) == 3 and found[("kmeans", "image")]["n"] == 3
    assert found[("kmeans", "image")]["stats"]["nmi"][0] == pytest.approx(np.mean(image_nmi))
    # the claim compares seed by seed too (same seed, same data split)
    acc_of = {v: {r["seed"]: r["metrics"]["acc"] for r in store.query(method="kmeans", variant=v)} for v in ("concat", "image")}
    pair = cmp["claims"][0]["results"][0]["evidence"][0]["paired"]
    assert pair["n"] == 3 and pair["mean"] == pytest.approx(np.mean([acc_of["concat"][s] - acc_of["image"][s] for s in range(3)]))
    assert pair["wins"] == sum(acc_of["concat"][s] > acc_of["image"][s] for s in range(3))
    paths = write_report(str(refs), store, tmp_path / "rep")
    assert "toy_findings.png" in {p.name for p in paths}
    md = (tmp_path / "rep" / "toy.md").read_text()
    section = md.split("## Findings on stand-in data", 1)[1]
    assert f"{100 * np.mean(image_nmi):.2f}" in section and "| synthetic | paired | kmeans | image | 3 (0 failed) |" in section
    assert f"concat ahead in {pair['wins']}/3" in md


def test_paired_differences_count_only_strict_wins():
    from mmclust.repro.report import _paired

    pair = _paired({0: 0.5, 1: 0.6, 2: 0.4, 7: 0.9}, {0: 0.5, 1: 0.5, 2: 0.5})  # seed 7 has no partner
    assert pair["n"] == 3 and pair["wins"] == 1 and pair["mean"] == pytest.approx(0.0)
    assert pair["std"] == pytest.approx(0.1)
    assert _paired({0: 0.5}, {0: 0.4}) is None  # one common seed says nothing about spread
