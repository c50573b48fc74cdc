"""Thread counts: each run sets torch and BLAS threads (cores // jobs or --threads), checked inside the workers."""

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from mmclust.cli import main
from mmclust.data import DataError
from mmclust.repro import threads
from mmclust.repro.runner import RunSpec, execute_run, reproduce
from mmclust.repro.store import ResultStore

from .test_runner import toy_refs


@pytest.fixture
def keep_threads():
    """Whatever a test sets, the session's torch and BLAS thread counts come back afterwards."""
    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # records the pools' counts now, restores them on exit
        yield
    torch.set_num_threads(before)


def test_threads_per_run_divides_the_cores(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    assert threads.threads_per_run(1) is None  # one run keeps the process's own setting
    assert threads.threads_per_run(2) == 4
    assert threads.threads_per_run(3) == 2
    assert threads.threads_per_run(16) == 1  # never 0
    assert threads.threads_per_run(2, threads=3) == 3  # an explicit count wins
    assert threads.threads_per_run(1, threads=5) == 5


@pytest.mark.parametrize("jobs,n", [(0, None), (1, 0), (2, -1)])
def test_bad_counts_are_usage_errors(jobs, n):
    with pytest.raises(DataError, match="must be >= 1"):
        threads.threads_per_run(jobs, n)


def test_limit_threads_sets_torch_and_every_blas_pool_and_restores(keep_threads):
    start = threads.current_threads()
    target = start["torch"] + 1  # a count the process does not already have
    restore = threads.limit_threads(target)
    now = threads.current_threads()
    assert now["torch"] == target and torch.get_num_threads() == target
    assert now["blas"] and all(n == target for n in now["blas"].values())
    assert all(pool["num_threads"] == target for pool in threadpool_info())
    restore()
    assert threads.current_threads() == start


def _stored_threads(store):
    return [(r["environment"]["torch_threads"], set(r["environment"]["blas_threads"].values())) for r in store.query()]


def test_parallel_workers_run_with_the_explicit_count(tmp_path):
    # loky would give each of 2 workers cores // 2 threads on its own; 3 is what only --threads can give
    store = ResultStore(tmp_path / "r.db")
    out = reproduce(str(toy_refs(tmp_path, claim=False)), runs=2, store=store, n_jobs=2, quiet=True, threads=3)
    assert out["done"] == 4
    assert _stored_threads(store) == [(3, {3})] * 4


def test_parallel_workers_default_to_cores_over_jobs(tmp_path, monkeypatch):
    cores = 2 * threads.available_cores() + 2  # pretend: a count the workers' own defaults cannot produce
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    store = ResultStore(tmp_path / "r.db")
    reproduce(str(toy_refs(tmp_path, claim=False)), runs=2, store=store, n_jobs=2, quiet=True)
    assert _stored_threads(store) == [(cores // 2, {cores // 2})] * 4


def test_a_single_run_sets_its_threads_in_process(tmp_path, keep_threads):
    target = torch.get_num_threads() + 1
    res = execute_run(RunSpec(method="kmeans", variant="concat", dataset="synthetic"), threads=target)
    assert res["environment"]["torch_threads"] == target
    assert set(res["environment"]["blas_threads"].values()) == {target}


def test_cli_threads_flag(tmp_path, monkeypatch, capsys, keep_threads):
    monkeypatch.chdir(tmp_path)
    target = torch.get_num_threads() + 1
    assert main(["run", "kmeans", "--dataset", "synthetic", "--quiet", "--threads", str(target), "--db", "r.db"]) == 0
    assert ResultStore(tmp_path / "r.db").query()[0]["environment"]["torch_threads"] == target


@pytest.mark.parametrize("argv", [
    ["run", "kmeans", "--dataset", "synthetic", "--threads", "0", "--db", "out.db"],
    ["reproduce", "cigit_c", "--jobs", "2", "--threads", "0", "--db", "out.db"],
    ["reproduce", "cigit_c", "--jobs", "0", "--db", "out.db"],
])
def test_cli_bad_threads_exit_2_and_write_nothing(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert ">= 1" in capsys.readouterr().err  # said by whichever check sees it first (threads or jobs)
    assert list(tmp_path.iterdir()) == []


def test_workers_kept_from_an_earlier_sweep_use_this_sweeps_store_and_data(tmp_path, monkeypatch):
    """joblib keeps its workers, with the working directory and environment they started with: a second sweep of
    one process, in another folder and with another MMCLUST_DATA, must still write its own store and read its data."""
    import hashlib

    import numpy as np

    from mmclust.data import make_multiview_blobs

    for i in range(2):
        work = tmp_path / f"w{i}"
        (work / "data").mkdir(parents=True)
        ds = make_multiview_blobs(7855, 6, {"image": 100, "text": 100}, seed=i)  # another file each time
        np.savez(work / "data" / "dmim_iapr.npz", image=ds.views["image"], text=ds.views["text"], labels=ds.labels)
        monkeypatch.chdir(work)
        monkeypatch.setenv("MMCLUST_DATA", "data")  # relative, as the README passes it
        refs = toy_refs(work, claim=False)
        refs.write_text(refs.read_text().replace('"synthetic"', '"dmim_iapr"'))
        out = reproduce("toy.toml", runs=1, store=ResultStore("r.db"), n_jobs=2, device="cpu", quiet=True)
        assert (out["done"], out["skipped"], out["failed"]) == (2, 0, 0), out
        rows = ResultStore(work / "r.db").query()
        sha = hashlib.sha256((work / "data" / "dmim_iapr.npz").read_bytes()).hexdigest()
        assert len(rows) == 2 and {r["data_sha256"] for r in rows} == {sha}
