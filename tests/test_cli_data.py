"""The command line on a user's own file: `run --data`, `compare`, and DataError -> one line, exit 2, nothing written."""

import re
import sqlite3

import numpy as np
import pytest

from mmclust.cli import main
from tests.data.mvfiles import tfidf_views, write_v5

TINY_EPOCHS = ["--max-epochs", "1"]


@pytest.fixture
def dense_mat(tmp_path, rng):
    """X: 1x3 cell of dense views, Y: labels 1..4 (well separated), 80 samples."""
    y = np.repeat(np.arange(1, 5), 20)
    centres = rng.normal(scale=4.0, size=(4, 6))
    views = [centres[y - 1] @ rng.normal(size=(6, d)) + rng.normal(size=(80, d)) for d in (8, 5, 3)]
    return write_v5(tmp_path / "mine.mat", views, y)


@pytest.fixture
def sparse_mat(tmp_path):
    views, y = tfidf_views(120, 6, (200, 150, 100, 80, 60), seed=0)
    return write_v5(tmp_path / "docs.mat", views, y, key="fea", labels_key="gt")


def _metrics(out: str) -> dict:
    return {k: float(v) for k, v in re.findall(r"(acc|nmi|ari|f_score|purity)=([0-9.]+)", out)}


def test_run_kmeans_on_a_file_prints_every_metric(dense_mat, capsys):
    assert main(["run", "kmeans", "--data", str(dense_mat), "--quiet"]) == 0
    out = capsys.readouterr().out
    m = _metrics(out)
    assert set(m) == {"acc", "nmi", "ari", "f_score", "purity"} and m["acc"] > 0.9
    assert "labels 1..4 mapped to 0..3" in out


def test_run_on_a_sparse_file_normalises_rows_for_kmeans(sparse_mat, capsys):
    assert main(["run", "kmeans", "--data", str(sparse_mat), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "normalize=l2" in out and _metrics(out)["acc"] > 0.9
    assert main(["run", "dec", "--data", str(sparse_mat), "--views", "0,1", *TINY_EPOCHS, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "densified, about 0 MiB" in out and "acc=" in out


@pytest.mark.parametrize("method", ["dec", "jecl", "cigit_c"])
def test_deep_methods_finish_on_two_chosen_views(method, dense_mat, capsys):
    assert main(["run", method, "--data", str(dense_mat), "--views", "0,2", *TINY_EPOCHS, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "views view0, view2" in out and "acc=" in out


def test_two_view_method_takes_the_first_two_and_says_so(dense_mat, capsys):
    assert main(["run", "jecl", "--data", str(dense_mat), *TINY_EPOCHS, "--quiet"]) == 0
    assert "jecl takes 2 views: using view0, view1 of view0, view1, view2 (choose with --views)" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_unlabelled_npz_saves_labels_and_scores_nothing(suffix, tmp_path, rng, capsys):
    n = 90
    np.savez(tmp_path / "u.npz", a=rng.normal(size=(n, 4)), b=rng.normal(size=(n, 7)))
    out_path = tmp_path / f"out{suffix}"
    assert main(["run", "kmeans", "--data", str(tmp_path / "u.npz"), "--n-clusters", "6", "--save-labels", str(out_path),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "not scored" in out and "acc=" not in out
    if suffix == ".npy":
        labels = np.load(out_path, allow_pickle=False)
    else:
        rows = out_path.read_text().splitlines()
        assert rows[0] == "row,cluster"
        labels = np.array([int(r.split(",")[1]) for r in rows[1:]])
    assert labels.shape == (n,) and set(labels.tolist()) == set(range(6))


def test_saved_csv_keeps_the_files_label_ids(dense_mat, tmp_path):
    out_path = tmp_path / "pred.csv"
    assert main(["run", "kmeans", "--data", str(dense_mat), "--save-labels", str(out_path), "--quiet"]) == 0
    rows = out_path.read_text().splitlines()
    assert rows[0] == "row,cluster,label" and rows[1].endswith(",1") and rows[-1].endswith(",4")


def test_saved_csv_has_every_rows_own_label_id_in_file_order(tmp_path, rng):
    # ids that are neither 0..k-1 nor 1..k, rows not sorted by class: the csv's label column is the file's, row by row
    ids = rng.permutation(np.repeat(np.array([-7, 3, 40]), 30))
    centres = {-7: 0.0, 3: 8.0, 40: -8.0}
    x = np.array([centres[i] for i in ids])[:, None] + rng.normal(size=(90, 3))
    np.savez(tmp_path / "ids.npz", a=x, b=x[:, :2] + rng.normal(size=(90, 2)), labels=ids)
    out_path = tmp_path / "pred.csv"
    assert main(["run", "kmeans", "--data", str(tmp_path / "ids.npz"), "--save-labels", str(out_path), "--quiet"]) == 0
    table = np.array([[int(v) for v in r.split(",")] for r in out_path.read_text().splitlines()[1:]])
    np.testing.assert_array_equal(table[:, 0], np.arange(90))
    np.testing.assert_array_equal(table[:, 2], ids)
    # each cluster is one class here (well separated), so the clusters follow the rows too
    assert all(len(set(table[table[:, 1] == c, 2])) == 1 for c in range(3))


def test_run_on_a_file_resumes_from_the_store_wherever_the_file_lies(dense_mat, tmp_path, capsys):
    db = str(tmp_path / "r.db")
    assert main(["run", "kmeans", "--data", str(dense_mat), "--db", db, "--quiet"]) == 0
    first = _metrics(capsys.readouterr().out)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / dense_mat.name).write_bytes(dense_mat.read_bytes())
    assert main(["run", "kmeans", "--data", str(moved / dense_mat.name), "--db", db, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "already in" in out and _metrics(out) == first
    assert main(["run", "kmeans", "--data", str(dense_mat), "--views", "0", "--db", db, "--quiet"]) == 0
    assert "already in" not in capsys.readouterr().out  # read another way: another run


def _corrupt(tmp_path):
    (tmp_path / "bad.mat").write_bytes(b"not a mat file" * 20)
    return ["run", "kmeans", "--data", str(tmp_path / "bad.mat")]


def _pickled(tmp_path):
    objs = np.empty(2, dtype=object)
    objs[0], objs[1] = np.ones((3, 2)), np.ones((3, 2))
    np.savez(tmp_path / "p.npz", views=objs)
    return ["compare", "--data", str(tmp_path / "p.npz"), "--methods", "kmeans"]


@pytest.mark.parametrize("make,msg", [
    (_corrupt, "bad.mat: cannot be read as a MATLAB file"),
    (_pickled, "array 'views' is a pickled object array; refused"),
    (lambda p: ["run", "kmeans", "--data", str(p / "none.mat")], "none.mat: no such file"),
    (lambda p: ["run", "kmeans"], "give a registry data set (--dataset NAME) or a file (--data FILE)"),
    (lambda p: ["run", "kmeans", "--dataset", "synthetic", "--data", "x.mat"], "either --dataset NAME or --data FILE"),
    (lambda p: ["run", "kmeans", "--data", str(_unlabelled(p))], "no labels in the file, so --n-clusters is needed"),
    (lambda p: ["run", "kmeans", "--dataset", "synthetic", "--views", "0,1"], "--views apply to --data FILE only"),
    (lambda p: ["run", "jecl", "--data", str(_unlabelled(p)), "--n-clusters", "2", "--views", "0"], "jecl takes exactly 2 views"),
    (lambda p: ["run", "kmeans", "--data", str(_unlabelled(p)), "--n-clusters", "2", "--views", "9"], "no view '9'"),
    (lambda p: ["run", "kmeans", "--data", str(_unlabelled(p)), "--n-clusters", "2", "--save-labels", "x.txt"], "expected a .npy or .csv"),
    (lambda p: ["compare", "--data", str(_unlabelled(p)), "--n-clusters", "2", "--methods", "kmeans,nope"], "unknown method 'nope'"),
])
def test_data_errors_exit_2_with_one_line_and_write_nothing(make, msg, tmp_path, monkeypatch, capsys):
    argv = make(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv + ["--db", "out.db"]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_sparse_views_too_big_to_densify_are_refused_before_anything_runs(sparse_mat, tmp_path, monkeypatch, capsys):
    from mmclust.data import dataset as dataset_module

    monkeypatch.setattr(dataset_module, "MAX_DENSE_BYTES", 1000)  # the fixture's two views need 120*350*4 bytes
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv in (["run", "dec", "--data", str(sparse_mat), "--views", "0,1"],
                 ["compare", "--data", str(sparse_mat), "--methods", "kmeans,jecl"]):
        assert main(argv + [*TINY_EPOCHS, "--db", "out.db"]) == 2  # not a failed run stored in out.db
        err = capsys.readouterr().err
        assert "'view0' 120x200, 'view1' 120x150 would need 0 MiB as dense float32, over the 0 MiB limit" in err
        assert "use k-means" in err and len(err.strip().splitlines()) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert main(["run", "kmeans", "--data", str(sparse_mat), "--quiet"]) == 0  # k-means keeps them sparse


def _unlabelled(path):
    rng = np.random.default_rng(0)
    np.savez(path / "u.npz", a=rng.normal(size=(20, 3)), b=rng.normal(size=(20, 5)))
    return path / "u.npz"


def test_compare_writes_table_report_and_resumes_after_a_kill(dense_mat, tmp_path, monkeypatch, capsys):
    import mmclust.repro.comparison as comparison

    db, out = tmp_path / "c.db", tmp_path / "rep"
    argv = ["compare", "--data", str(dense_mat), "--methods", "kmeans,dec", "--runs", "2", *TINY_EPOCHS,
            "--db", str(db), "--out", str(out), "--quiet"]
    real = comparison.execute_run
    calls = []

    def killed_after_three(spec, **kw):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the sweep is killed during its 4th run
        calls.append(spec)
        return real(spec, **kw)

    monkeypatch.setattr(comparison, "execute_run", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    capsys.readouterr()
    done = sqlite3.connect(db).execute("select count(*) from runs where status='done'").fetchone()[0]
    assert done == 3

    computed = []

    def counting(spec, store=None, **kw):
        res = real(spec, store=store, **kw)
        if not res.get("skipped"):
            computed.append((spec.method, spec.seed))
        return res

    monkeypatch.setattr(comparison, "execute_run", counting)
    assert main(argv) == 0
    assert computed == [("dec", 1)]  # only the run the kill lost
    text = capsys.readouterr().out
    assert re.search(r"kmeans \(best\)\s+2\s+\d+\.\d ± \d+\.\d", text) or re.search(r"dec \(best\)\s+2", text)
    assert "best − method" in text
    md = (out / "mine_compare.md").read_text()
    assert "| method | runs | ACC | NMI | ARI | F | PURITY | s / run |" in md and "## Paired differences" in md
    assert "- views of kmeans, dec: view0 (8-d), view1 (5-d), view2 (3-d)" in md
    assert (out / "mine_compare.html").is_file()
    assert main(argv) == 0 and computed == [("dec", 1)]  # a finished comparison recomputes nothing


@pytest.mark.parametrize("method,fixture", [("kmeans", "sparse_mat"), ("cigit_c", "dense_mat")])
def test_missing_views_protocol_on_a_file(method, fixture, request, capsys):
    """CIGIT-C's setting on a user's file: a share of the samples loses a view (sparse views: mean-filled densely)."""
    path = request.getfixturevalue(fixture)
    argv = ["run", method, "--data", str(path), "--views", "0,1", "--protocol", "incomplete", "--missing-rate", "0.3",
            *TINY_EPOCHS, "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(incomplete 30%" in out and "acc=" in out


def test_run_kmeans_on_a_sparse_v73_file(tmp_path, capsys):
    # MATLAB v7.3 (HDF5): h5py gives 64-bit sparse indices, which scikit-learn's k-means refused (run failed)
    from scipy import sparse

    from tests.data.mvfiles import write_v73

    views, y = tfidf_views(120, 6, (200, 150, 100, 80, 60), seed=0)
    path = write_v73(tmp_path / "docs73.mat", {"fea": [sparse.csc_matrix(v) for v in views],
                                               "gt": y.reshape(-1, 1).astype(float)})
    assert main(["run", "kmeans", "--data", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "normalize=l2" in out and _metrics(out)["acc"] > 0.9
