"""The command line: the README's main job, dataset listing, and clear usage errors (exit 2, nothing written)."""

import pytest

from mmclust.cli import main


def test_datasets_lists_present_files(capsys, load_real):
    load_real("bdgp")
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("bdgp", "wiki_sift_lda", "wiki_roph", "scene15", "uci_digits"):
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert " present " in line
    assert main(["datasets", "--all"]) == 0
    assert "jecl_coco_cross.npz" in capsys.readouterr().out


def test_run_kmeans_on_synthetic_prints_metrics(capsys):
    assert main(["run", "kmeans", "--dataset", "synthetic", "--seed", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    acc = float(out.split("acc=")[1].split()[0])
    assert 0.5 < acc <= 1.0
    for key in ("nmi=", "ari=", "f_score=", "purity="):
        assert key in out


@pytest.mark.parametrize("argv,msg", [
    (["run", "nosuch", "--dataset", "synthetic"], "unknown method 'nosuch'; valid: "),
    (["run", "kmeans", "--dataset", "nosuch"], "unknown dataset 'nosuch'; valid: "),
    (["run", "kmeans", "--dataset", "synthetic", "--protocol", "incomplete"], "needs --missing-rate"),
    (["run", "kmeans", "--dataset", "synthetic", "--set", "bogus=1"], "no parameter(s) ['bogus']"),
])
def test_usage_errors_exit_2_and_write_nothing(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv + ["--db", "out.db"]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "out.db").exists()


@pytest.mark.parametrize("argv,msg", [
    (["reproduce", "nosuch"], "unknown paper 'nosuch'; valid: jecl, cigit_c"),
    (["reproduce", "cigit_c", "--dataset", "atlantis"], "unknown dataset 'atlantis'"),
    (["reproduce", "cigit_c", "--runs", "0"], "runs must be >= 1"),
    (["reproduce", "cigit_c", "--table", "99"], "no table '99'"),
    (["report", "nosuch"], "unknown paper"),
    (["report", "cigit_c"], "does not exist"),
])
def test_harness_usage_errors(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert msg in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_reproduce_report_results_end_to_end(capsys, tmp_path, monkeypatch, load_real):
    load_real("bdgp")
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "cigit_c", "--dataset", "bdgp", "--runs", "1", "--quiet", "--no-plots", "--max-epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "runs done" in out and (tmp_path / "reports" / "cigit_c.md").is_file()
    assert main(["results"]) == 0
    assert "bdgp" in capsys.readouterr().out
    md = (tmp_path / "reports" / "cigit_c.md").read_text()
    assert "| 8 | cigit_c | full | bdgp | incomplete 50%; held-out: 500 test rows | ACC | 62.74 |" in md
    # quick-look runs (--max-epochs) are another configuration: shown apart, never a verdict or in the summary
    assert "0 reproduced / 0 below / 0 above / 7 inconclusive" in md and "no runs at the paper's settings" in md
    other = md.split("## Runs at other settings", 1)[1].split("##", 1)[0]
    assert '"max_epochs": 1' in other and "(n=1, 0 failed)" in other


def test_run_with_store_never_recomputes_a_done_run(capsys, tmp_path):
    db = str(tmp_path / "r.db")
    assert main(["run", "kmeans", "--dataset", "synthetic", "--db", db, "--quiet"]) == 0
    first = capsys.readouterr().out
    assert main(["run", "kmeans", "--dataset", "synthetic", "--db", db, "--quiet"]) == 0
    second = capsys.readouterr().out
    assert "already in" in second and first.split("acc=")[1].split()[0] == second.split("acc=")[1].split()[0]
