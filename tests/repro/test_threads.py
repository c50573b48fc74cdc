"""Thread counts: each run sets torch and BLAS threads (cores // jobs or --threads), checked inside the workers."""

import os
import re
import subprocess
import sys

import numpy as np
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


# -- the default layout: one single-threaded run per core on the CPU, one run at a time on a GPU or with Dask ------
@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("cores,jobs,each", [(1, 1, None), (2, 2, 1), (16, 16, 1)])
def test_default_layout_is_one_single_threaded_run_per_core(cores, jobs, each, monkeypatch, no_cuda):
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    for device in ("cpu", "auto"):  # auto is the CPU here
        layout = threads.run_layout(device=device, n_runs=100)
        assert (layout.jobs, layout.threads, layout.cores, layout.default) == (jobs, each, cores, True)
        assert layout.jobs * (layout.threads or 1) <= cores  # never oversubscribed
    assert threads.default_jobs("cpu") == cores


@pytest.mark.parametrize("cuda", [True, False])
def test_default_layout_cpu_vs_cuda_vs_dask(cuda, monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert threads.default_jobs("cpu") == 16 and threads.run_layout(device="cpu").jobs == 16
    assert threads.default_jobs(torch.device("cpu")) == 16
    # auto takes the GPU when there is one: its runs would share the one device
    assert threads.run_layout(device="auto").jobs == (1 if cuda else 16)
    for device in ("cuda", "cuda:0", torch.device("cuda")):  # without CUDA the device check reports it, not this
        assert threads.default_jobs(device) == 1 and threads.run_layout(device=device).jobs == 1
    for device in ("cpu", "auto", "cuda"):  # Dask's workers are the parallelism
        layout = threads.run_layout(device=device, engine="dask")
        assert (layout.jobs, layout.threads) == (1, None) and threads.default_jobs(device, "dask") == 1
    assert threads.run_layout(device="cpu", engine="dask", threads=3).threads == 3


def test_an_explicit_jobs_wins_over_the_default(monkeypatch, no_cuda):
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    one = threads.run_layout(1, device="cpu", n_runs=100)
    assert (one.jobs, one.threads, one.default) == (1, None, False)  # one run keeps the process's own threads
    three = threads.run_layout(3, device="cpu", n_runs=100)
    assert (three.jobs, three.threads, three.default) == (3, 5, False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert threads.run_layout(4, device="cuda", n_runs=100).jobs == 4  # on a GPU too
    assert threads.run_layout(2, device="cpu", threads=3, n_runs=100).threads == 3  # and an explicit --threads


def test_never_more_runs_at_a_time_than_runs(monkeypatch, no_cuda):
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    assert (threads.run_layout(device="cpu", n_runs=3).jobs, threads.run_layout(device="cpu", n_runs=3).threads) == (3, 5)
    assert threads.run_layout(8, device="cpu", n_runs=2).jobs == 2  # an explicit count too: no idle worker
    for n in (0, 1):
        layout = threads.run_layout(device="cpu", n_runs=n)
        assert (layout.jobs, layout.threads) == (1, None)  # one run at a time: in this process, its own threads
    assert threads.run_layout(device="cpu").jobs == 16  # runs not known yet: the cores


@pytest.mark.parametrize("jobs", [0, -1, True, 1.5])
def test_run_layout_refuses_a_bad_jobs(jobs):
    with pytest.raises(DataError, match="jobs must be >= 1"):
        threads.run_layout(jobs, device="cpu")


def test_layout_line():
    assert threads.Layout(2, 1, 2, default=True).describe() == \
        "2 runs at a time x 1 thread (cores: 2; the default on the CPU, --jobs N to change)"
    assert threads.Layout(3, 5, 16).describe() == "3 runs at a time x 5 threads (cores: 16)"
    assert threads.Layout(1, None, 2).describe().startswith("1 run at a time x ")
    assert threads.Layout(1, None, 2, engine="dask").describe() == "runs on the Dask workers x the workers' own threads each"


def test_reproduce_starts_no_more_workers_than_runs_left(tmp_path, monkeypatch, no_cuda):
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    store = ResultStore(tmp_path / "r.db")
    refs = str(toy_refs(tmp_path, claim=False))  # 2 configurations
    lines = []
    first = reproduce(refs, runs=2, store=store, n_jobs=None, device="cpu", quiet=True, announce=lines.append)
    assert first["done"] == 4 and first["layout"]["jobs"] == 3 and first["layout"]["threads"] == 1
    second = reproduce(refs, runs=3, store=store, n_jobs=None, device="cpu", quiet=True, announce=lines.append)
    assert second["done"] == 2 and second["layout"]["jobs"] == 2  # 2 runs left, not 3 workers
    third = reproduce(refs, runs=3, store=store, n_jobs=None, device="cpu", quiet=True, announce=lines.append)
    assert third["skipped"] == 6 and "layout" not in third and len(lines) == 2  # nothing to run: no layout
    assert lines[0].startswith("3 runs at a time x 1 thread (cores: 3") and lines[1].startswith("2 runs at a time")
    assert len(store.query()) == 6


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


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs 2 cores and CPU affinity (Linux) to pin the command to them")
def test_cli_default_layout_does_not_oversubscribe(tmp_path):
    """``mmclust reproduce`` with no --jobs, in its own process pinned to 2 cores: 2 runs at a time in worker
    processes, each with 1 torch / BLAS thread (what the stored runs record), so runs x threads <= cores."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    refs = toy_refs(tmp_path, claim=False)  # 2 configurations x 2 seeds: 4 runs
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}  # nothing limits the threads but mmclust
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.Popen([sys.executable, "-m", "mmclust.cli", "reproduce", str(refs), "--runs", "2", "--device", "cpu",
                             "--db", "r.db", "--no-report", "--quiet"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.sched_setaffinity(0, cores))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "4 runs done, 0 already stored, 0 failed" in out
    m = re.search(r"^layout: (\d+) runs? at a time x (\d+) threads? \(cores: (\d+)", out, re.M)
    assert m, out
    jobs, each, seen_cores = map(int, m.groups())
    assert (jobs, each, seen_cores) == (2, 1, 2)  # one single-threaded run per core
    rows = ResultStore(tmp_path / "r.db").query()
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    for r in rows:  # what each run ran with, recorded inside the worker
        assert r["environment"]["torch_threads"] * jobs <= len(cores)
        assert r["environment"]["blas_threads"] and all(n * jobs <= len(cores) for n in r["environment"]["blas_threads"].values())
    pids = {r["owner"].rsplit(":", 2)[1] for r in rows}
    assert str(proc.pid) not in pids and 1 <= len(pids) <= jobs  # computed in worker processes, no more than jobs


def test_default_layout_of_other_devices_is_one_run_at_a_time(monkeypatch):
    """Only the CPU gets one run per core: any other device (an accelerator the runs would share, or no device at
    all, which the device check reports) runs one at a time."""
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    for device in ("mps", "xpu", "meta", torch.device("mps")):
        assert threads.default_jobs(device) == 1 and threads.run_layout(device=device, n_runs=100).jobs == 1
    for device in ("gpu", "cpu:x", "", 3.5):  # not device names
        assert threads.default_jobs(device) == 1 and threads.run_layout(device=device, n_runs=100).jobs == 1


def _two_data_folders(tmp_path) -> list:
    """``tmp_path/d0`` and ``tmp_path/d1``, each holding a different ``dmim_iapr.npz``; their image views."""
    from mmclust.data import make_multiview_blobs

    views = []
    for i in range(2):
        (tmp_path / f"d{i}").mkdir()
        ds = make_multiview_blobs(7855, 6, {"image": 100, "text": 100}, seed=i)
        np.savez(tmp_path / f"d{i}" / "dmim_iapr.npz", image=ds.views["image"], text=ds.views["text"], labels=ds.labels)
        views.append(ds.views["image"])
    return views


def test_a_kept_worker_takes_the_sweeps_settings(tmp_path, monkeypatch):
    """``_use_settings`` (what a joblib worker runs first): the sweep's MMCLUST_* variables replace the worker's,
    one the sweep does not set is removed, and a data set cached from another data folder is read afresh."""
    from mmclust.repro import runner

    for key, value in os.environ.items():  # whatever _use_settings removes comes back after the test
        if key.startswith("MMCLUST_"):
            monkeypatch.setenv(key, value)
    views = _two_data_folders(tmp_path)
    monkeypatch.setenv("MMCLUST_DATA", str(tmp_path / "d0"))
    monkeypatch.setenv("MMCLUST_WORDNET", str(tmp_path / "old" / "data.noun"))
    runner._cached_dataset.cache_clear()
    try:
        np.testing.assert_allclose(runner._cached_dataset("dmim_iapr").views["image"], views[0], rtol=1e-6)
        runner._use_settings({"MMCLUST_DATA": str(tmp_path / "d1")})
        assert os.environ["MMCLUST_DATA"] == str(tmp_path / "d1") and "MMCLUST_WORDNET" not in os.environ
        np.testing.assert_allclose(runner._cached_dataset("dmim_iapr").views["image"], views[1], rtol=1e-6)
    finally:
        runner._cached_dataset.cache_clear()


def test_sweep_settings_are_absolute(tmp_path, monkeypatch):
    """The settings sent to workers (whose working directory is their own) hold absolute paths."""
    from mmclust.repro import runner

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMCLUST_DATA", "data")
    monkeypatch.setenv("MMCLUST_WORDNET", "wn/data.noun")
    settings = runner._sweep_settings()
    assert settings["MMCLUST_DATA"] == str(tmp_path.resolve() / "data")
    assert settings["MMCLUST_WORDNET"] == str(tmp_path.resolve() / "wn" / "data.noun")


def test_threads_alone_never_oversubscribes(monkeypatch):
    """``reproduce --threads T`` without ``--jobs``: as many T-thread runs as the cores hold (at least one)."""
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for t, jobs in ((1, 16), (3, 5), (4, 4), (16, 1), (32, 1)):
        layout = threads.run_layout(None, t, "cpu", n_runs=100)
        assert (layout.jobs, layout.threads) == (jobs, t)
        assert layout.jobs * layout.threads <= max(16, t)
    assert threads.run_layout(6, 4, "cpu", n_runs=100).jobs == 6  # an explicit --jobs still wins


def test_in_process_runs_read_the_current_data_folder(tmp_path, monkeypatch):
    """The one-run-at-a-time path (``--jobs 1``, a GPU, one run left) runs in this process: after ``MMCLUST_DATA``
    changes, a data set of the same name comes from the new folder, never from the cached copy of the old one."""
    from mmclust.repro import runner

    views = _two_data_folders(tmp_path)
    runner._cached_dataset.cache_clear()
    try:
        for i in range(2):
            monkeypatch.setenv("MMCLUST_DATA", str(tmp_path / f"d{i}"))
            used = runner._dataset_of(RunSpec("kmeans", "dmim_iapr", variant="concat", seed=0))
            np.testing.assert_allclose(used.views["image"], views[i], rtol=1e-6)
    finally:
        runner._cached_dataset.cache_clear()
