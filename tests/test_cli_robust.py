"""The command line under bad input and faults (issue 18), through the real entry point in a temporary folder.

Every usage error exits 2 with a message naming the problem and writes nothing (no store, no row, no report);
a failed run exits 1; missing or corrupt data is never a silent success; a report never hides stored runs.
"""

import shutil
import sqlite3
import textwrap

import pytest
import torch

from mmclust.cli import main
from mmclust.methods import METHODS, KMeansBaseline
from mmclust.repro import report
from mmclust.repro.store import ResultStore

TOY_UCI = textwrap.dedent("""
    [meta]
    paper = "toy"
    unit = "fraction"
    direction = "higher"

    [[result]]
    table = "1"
    method = "kmeans"
    variant = "concat"
    dataset = "uci_digits"
    protocol = "paired"
    metric = "acc"
    printed = "0.7"
    value = 0.7
    """)

TOY_SYNTHETIC = TOY_UCI.replace('"uci_digits"', '"synthetic"')


@pytest.fixture
def real_data(tmp_path, monkeypatch, load_real):
    """A private data folder holding uci_digits.mat and bdgp.mat (copies, so a test may corrupt them)."""
    load_real("uci_digits")
    load_real("bdgp")
    from mmclust.data.registry import data_dir

    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("uci_digits.mat", "bdgp.mat"):
        shutil.copy(data_dir() / name, folder / name)
    monkeypatch.setenv("MMCLUST_DATA", str(folder))
    return folder


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _rows(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM runs").fetchone()[0]


# -- 1. no silent success on missing or corrupt data ---------------------------------------------------------
def test_reproduce_without_the_data_exits_2_naming_the_file_and_writes_nothing(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MMCLUST_DATA", str(tmp_path / "nonexistent"))
    assert main(["reproduce", "cigit_c", "--dataset", "bdgp", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "nothing of cigit_c can run here on bdgp" in err
    assert "bdgp.mat not found in" in err and "MMCLUST_DATA" in err and "Traceback" not in err
    assert _files(work) == []


def test_reproduce_on_a_corrupt_file_says_corrupt_not_absent(tmp_path, monkeypatch, capsys, real_data):
    blob = bytearray((real_data / "bdgp.mat").read_bytes())
    blob[5000] ^= 0xFF
    (real_data / "bdgp.mat").write_bytes(bytes(blob))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["reproduce", "cigit_c", "--dataset", "bdgp", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bdgp.mat is corrupt" in err and "not found" not in err
    assert _files(work) == []
    # the report over a store says so too, cell by cell
    ResultStore(work / "r.db").close()
    assert main(["report", "cigit_c", "--db", "r.db", "--no-plots"]) == 0
    md = (work / "reports" / "cigit_c.md").read_text()
    bdgp_cells = [line for line in md.splitlines() if "| bdgp |" in line]
    assert bdgp_cells and all("| data_corrupt |" in line for line in bdgp_cells)
    assert "replace it with an intact copy" in bdgp_cells[0]


def test_report_without_the_data_still_reports_the_stored_runs(tmp_path, monkeypatch, capsys, real_data):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.toml").write_text(TOY_UCI)
    assert main(["reproduce", "toy.toml", "--runs", "3", "--quiet", "--no-plots"]) == 0
    before = (tmp_path / "reports" / "toy.md").read_text()
    assert "(n=3, 0 failed)" in before
    monkeypatch.setenv("MMCLUST_DATA", str(tmp_path / "empty"))  # the README's examples, run without MMCLUST_DATA
    assert main(["report", "toy.toml", "--no-plots"]) == 0
    after = _cell((tmp_path / "reports" / "toy.md").read_text())
    assert after[7] == _cell(before)[7] and after[7].endswith("(n=3, 0 failed)")  # the same runs, the same numbers
    assert after[9] == _cell(before)[9] != "data_absent"  # and the same verdict, from the store
    assert "uci_digits.mat is absent here now; from the stored runs" in after[10]


def test_report_keeps_runs_on_a_user_supplied_file_that_is_gone(tmp_path, monkeypatch):
    """A user's feature file has no registered sha256: its stored runs carry the only record of it."""
    import numpy as np

    from mmclust.data import make_multiview_blobs

    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("MMCLUST_DATA", str(folder))
    ds = make_multiview_blobs(7855, 6, {"image": 100, "text": 100}, seed=0)
    np.savez(folder / "dmim_iapr.npz", image=ds.views["image"], text=ds.views["text"], labels=ds.labels)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.toml").write_text(TOY_UCI.replace('"uci_digits"', '"dmim_iapr"'))
    assert main(["reproduce", "toy.toml", "--runs", "3", "--quiet", "--no-plots"]) == 0
    before = _cell((tmp_path / "reports" / "toy.md").read_text())
    (folder / "dmim_iapr.npz").unlink()
    report._paper_config.cache_clear()  # as in a new process: nothing remembered from when the file was there
    assert main(["report", "toy.toml", "--no-plots"]) == 0
    after = _cell((tmp_path / "reports" / "toy.md").read_text())
    assert after[7] == before[7] and after[7].endswith("(n=3, 0 failed)") and after[9] == before[9]
    assert "dmim_iapr.npz is absent here now" in after[10]


def _cell(md: str) -> list[str]:
    """The columns of the report's one table-1 row."""
    line = next(line for line in md.splitlines() if line.startswith("| 1 | kmeans"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_a_report_with_fewer_runs_is_written_beside_the_fuller_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.toml").write_text(TOY_SYNTHETIC)
    assert main(["reproduce", "toy.toml", "--runs", "3", "--quiet", "--no-plots"]) == 0
    full = (tmp_path / "reports" / "toy.md").read_text()
    ResultStore(tmp_path / "empty.db").close()
    capsys.readouterr()
    assert main(["report", "toy.toml", "--db", "empty.db", "--no-plots"]) == 0
    assert (tmp_path / "reports" / "toy.md").read_text() == full
    assert "(n=3" not in (tmp_path / "reports" / "toy.fewer-runs.md").read_text()
    assert "shows 3 stored runs, this report 0: kept it" in capsys.readouterr().err


# -- 2. usage errors: exit 2, a message naming the problem, nothing written ----------------------------------
RUN = ["run", "kmeans", "--dataset", "synthetic", "--quiet", "--db", "out.db"]


@pytest.mark.parametrize("extra,msg", [
    (["--set", "n_init=abc"], "--set n_init=abc: 'n_init' expects an integer (default 20), got 'abc'"),
    (["--set", "n_init=2.5"], "'n_init' expects an integer"),
    (["--set", "n_init=0"], "The 'n_init' parameter of KMeansBaseline must be an int in the range [1, inf). Got 0"),
    (["--set", "standardize=yes"], "'standardize' expects a boolean (true/false/1/0)"),
    (["--set", "n_clusters=0"], "The 'n_clusters' parameter of KMeansBaseline must be an int in the range [2, inf) or None"),
    (["--set", "n_clusters=2.5"], "Got 2.5 instead"),
    (["--seed", "-1"], "seed must be an integer in [0, 4294967295], got -1"),
    (["--device", "nosuch"], "unknown device 'nosuch'; valid: auto, cpu, cuda, cuda:N"),
])
def test_run_usage_errors_exit_2_and_write_nothing(extra, msg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(RUN + extra) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert _files(tmp_path) == []


def test_deep_method_override_typed_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "cigit_c", "--dataset", "synthetic", "--db", "out.db", "--set", "batch_size=abc"]) == 2
    assert "'batch_size' expects an integer (default 256), got 'abc'" in capsys.readouterr().err
    assert main(["run", "cigit_c", "--dataset", "synthetic", "--db", "out.db", "--set", "lr=-1"]) == 2
    assert "The 'lr' parameter of CIGITC must be a float in the range (0.0, inf)" in capsys.readouterr().err
    assert _files(tmp_path) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here: --device cuda is valid")
@pytest.mark.parametrize("command", [RUN, ["reproduce", "toy.toml", "--quiet"]])
def test_cuda_without_cuda_exits_2_before_any_row(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.toml").write_text(TOY_SYNTHETIC)
    assert main(command + ["--device", "cuda"]) == 2
    assert "device 'cuda': CUDA is not available here" in capsys.readouterr().err
    assert _files(tmp_path) == ["toy.toml"]


def test_set_false_is_false(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(RUN + ["--set", "standardize=False", "n_init=2"]) == 0
    params = ResultStore(tmp_path / "out.db").query()[0]["params"]
    assert params["standardize"] is False and params["n_init"] == 2


def test_run_on_a_missing_file_exits_2_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMCLUST_DATA", str(tmp_path / "nowhere"))
    assert main(["run", "kmeans", "--dataset", "bdgp", "--quiet", "--db", "out.db"]) == 2
    err = capsys.readouterr().err
    assert "bdgp: data file bdgp.mat not found in" in err and "Traceback" not in err
    assert _files(tmp_path) == []


@pytest.mark.parametrize("extra,msg", [
    (["--max-epochs", "-1"], "--max-epochs must be an integer >= 1, got -1"),
    (["--max-epochs", "0"], "--max-epochs must be an integer >= 1, got 0"),
    (["--jobs", "0"], "--jobs must be an integer >= 1, got 0"),
    (["--device", "nosuch"], "unknown device 'nosuch'"),
])
def test_reproduce_usage_errors_exit_2_and_write_nothing(extra, msg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.toml").write_text(TOY_SYNTHETIC)
    assert main(["reproduce", "toy.toml", "--runs", "1", "--quiet"] + extra) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert _files(tmp_path) == ["toy.toml"]


class _AlwaysFails(KMeansBaseline):
    def fit(self, ds, y=None):
        raise RuntimeError("kaput")


def test_reproduce_with_a_failed_run_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(METHODS, "kmeans", _AlwaysFails)
    (tmp_path / "toy.toml").write_text(TOY_SYNTHETIC)
    # --jobs 1: the patched METHODS is this process's; a worker process would run the real k-means
    assert main(["reproduce", "toy.toml", "--runs", "1", "--quiet", "--no-plots", "--jobs", "1"]) == 1
    assert "0 runs done, 0 already stored, 1 failed" in capsys.readouterr().out


def test_a_reference_paper_name_cannot_write_outside_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.toml").write_text(TOY_SYNTHETIC.replace('paper = "toy"', 'paper = "../../x"'))
    ResultStore(tmp_path / "r.db").close()
    assert main(["report", "evil.toml", "--db", "r.db", "--out", "out/deep"]) == 2
    assert "[meta] paper must be a plain identifier" in capsys.readouterr().err
    assert _files(tmp_path) == ["evil.toml", "r.db"]


@pytest.mark.parametrize("command,names", [
    ("run", ("valid methods:", "kmeans", "cigit_c", "valid datasets:", "bdgp", "valid devices: auto, cpu, cuda")),
    ("reproduce", ("valid papers: jecl, cigit_c", "valid datasets:", "uci_digits", "valid devices:")),
    ("report", ("valid papers: jecl, cigit_c, dmim, dm2c",)),
])
def test_help_lists_the_valid_names(command, names, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for name in names:
        assert name in out


def test_results_status_offers_only_valid_choices(capsys):
    with pytest.raises(SystemExit):
        main(["results", "--help"])
    assert "{done,failed,running}" in capsys.readouterr().out


def test_a_store_that_is_not_a_database_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.db").write_text("not a database, just text " * 100)
    assert main(["results", "--db", "notes.db"]) == 2
    assert "result store notes.db" in capsys.readouterr().err


# -- the same guarantees on a user's file (run --data, compare), review of issue 18 ------------------------------
def _user_file(tmp_path):
    import numpy as np

    from tests.data.mvfiles import write_v5

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    views = [rng.normal(size=(60, 4)) + labels[:, None], rng.normal(size=(60, 3)) - labels[:, None]]
    return write_v5(tmp_path / "mine.mat", views, labels)


def test_run_data_types_set_values_as_registry_runs_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _user_file(tmp_path)
    assert main(["run", "kmeans", "--data", str(data), "--quiet", "--db", "out.db", "--set", "standardize=False",
                 "n_init=2"]) == 0
    params = ResultStore(tmp_path / "out.db").query()[0]["params"]
    assert params["standardize"] is False and params["n_init"] == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here: --device cuda is valid")
@pytest.mark.parametrize("command", [["run", "kmeans", "--quiet", "--db", "out.db"],
                                     ["compare", "--methods", "kmeans", "--runs", "1", "--quiet", "--no-plots"]])
def test_file_commands_refuse_an_absent_device_before_the_store_exists(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = _user_file(tmp_path)
    assert main(command + ["--data", str(data), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda': CUDA is not available here" in err and "Traceback" not in err
    assert _files(tmp_path) == ["mine.mat"]  # no store, no report


def test_a_corrupt_user_file_is_a_usage_error_not_a_traceback(tmp_path, monkeypatch, capsys):
    """A byte flipped inside a compressed .mat variable (zlib's check fails): exit 2 naming the file."""
    monkeypatch.chdir(tmp_path)
    import numpy as np
    from scipy.io import savemat

    from tests.data.mvfiles import cell

    data = tmp_path / "mine.mat"
    rng = np.random.default_rng(0)
    savemat(str(data), {"X": cell([rng.normal(size=(60, 4)), rng.normal(size=(60, 3))]),
                        "Y": np.repeat(np.arange(3.0), 20)[:, None]}, do_compression=True)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside a compressed variable: zlib's check fails
    data.write_bytes(bytes(raw))
    assert main(["run", "kmeans", "--data", str(data), "--quiet", "--db", "out.db"]) == 2
    err = capsys.readouterr().err
    assert "mine.mat: cannot be read as a MATLAB file" in err and "Traceback" not in err
    assert _files(tmp_path) == ["mine.mat"]


def test_a_report_never_replaces_one_whose_claims_show_more_runs(tmp_path, monkeypatch, capsys):
    """The runs of a claim's configurations (here: k-means at 10% / 50% missing, no table cell) count as shown."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.toml").write_text(TOY_SYNTHETIC + textwrap.dedent("""
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
        """))
    assert main(["reproduce", "toy.toml", "--runs", "2", "--quiet", "--no-plots"]) == 0
    full = (tmp_path / "reports" / "toy.md").read_text()
    assert "@10% – (n=0)" not in full
    for seed in ("0", "1"):  # the table cell's runs only: no claim evidence
        assert main(["run", "kmeans", "--dataset", "synthetic", "--variant", "concat", "--seed", seed, "--db", "b.db", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", "toy.toml", "--db", "b.db", "--no-plots"]) == 0
    assert (tmp_path / "reports" / "toy.md").read_text() == full
    assert "@10% – (n=0)" in (tmp_path / "reports" / "toy.fewer-runs.md").read_text()
    assert "shows 6 stored runs, this report 2: kept it" in capsys.readouterr().err


def test_run_data_on_a_run_another_process_holds_says_so(tmp_path, monkeypatch, capsys):
    """Not 'run failed: None': the run is claimed by a live process, and nothing is computed or written."""
    import os
    import socket

    from mmclust.repro.comparison import file_run_specs
    from mmclust.repro.runner import _ids

    monkeypatch.chdir(tmp_path)
    data = _user_file(tmp_path)
    (spec,), _ = file_run_specs(data, ["kmeans"], [0])
    ident = spec.identity()
    run_id, ident["config_id"] = _ids(ident)
    holder = f"{socket.gethostname()}:{os.getppid()}:0"  # the parent process: alive for the whole test
    store = ResultStore(tmp_path / "out.db")
    assert store.claim(run_id, ident, holder)
    assert main(["run", "kmeans", "--data", str(data), "--quiet", "--db", "out.db"]) == 1
    assert f"is being computed by {holder}" in capsys.readouterr().err
    assert [(r["status"], r["owner"]) for r in store.query()] == [("running", holder)]


def test_run_data_checks_threads_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = _user_file(tmp_path)
    assert main(["run", "kmeans", "--data", str(data), "--quiet", "--db", "out.db", "--threads", "0"]) == 2
    assert "threads must be >= 1, got 0" in capsys.readouterr().err
    assert _files(tmp_path) == ["mine.mat"]
