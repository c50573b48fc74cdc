"""`compare`'s summary: mean ± std per method and metric, and seed-by-seed differences against the best method."""

import pytest

from mmclust.repro.comparison import paired_rows, summarise, table_rows
from mmclust.repro.runner import RunSpec


def _rows(values: dict):
    """specs and stored rows from {method: [(acc, nmi) per seed] or None for a failed run}."""
    specs, rows = [], []
    for method, per_seed in values.items():
        for seed, v in enumerate(per_seed):
            specs.append(RunSpec(method=method, dataset="f", seed=seed, data="f.mat"))
            rows.append({"status": "failed"} if v is None else
                        {"status": "done", "metrics": {"acc": v[0], "nmi": v[1]}, "wall_time_s": 2.0 + seed})
    return specs, rows


def test_mean_std_best_and_paired_differences():
    specs, rows = _rows({"kmeans": [(0.5, 0.4), (0.7, 0.6)], "jecl": [(0.8, 0.5), (0.9, 0.7), (0.85, 0.6)]})
    s = summarise(specs, rows)
    assert s["best"] == "jecl" and s["metrics"] == ["acc", "nmi"]
    km = next(m for m in s["methods"] if m["method"] == "kmeans")
    assert km["n"] == 2 and km["stats"]["acc"] == pytest.approx((0.6, 0.1414213562))  # sample std (ddof 1)
    assert km["wall_s"] == pytest.approx((2.5, 0.7071067812))
    p = s["paired"]["kmeans"]
    assert p["n"] == 2  # seeds both finished
    assert p["acc"] == pytest.approx((0.25, 0.0707106781))  # best - kmeans: 0.3, 0.2
    header, table = table_rows(s)
    assert header == ["method", "runs", "ACC", "NMI", "s / run"]
    assert table[1][:3] == ["jecl (best)", "3", "85.0 ± 5.0"]
    assert paired_rows(s)[1] == [["jecl − kmeans", "2", "25.0 ± 7.1", "10.0 ± 0.0"]]


def test_failed_runs_are_counted_not_averaged():
    specs, rows = _rows({"dec": [(0.4, 0.3), None, (0.6, 0.5)]})
    s = summarise(specs, rows)
    dec = s["methods"][0]
    assert dec["n"] == 2 and dec["failed"] == 1 and dec["stats"]["acc"][0] == pytest.approx(0.5)
    assert table_rows(s)[1][0][1] == "2 (1 failed)"


def test_unlabelled_runs_have_no_metrics_and_no_best():
    specs = [RunSpec(method="kmeans", dataset="f", seed=0, data="f.npz")]
    s = summarise(specs, [{"status": "done", "metrics": {}, "wall_time_s": 1.0}])
    assert s["metrics"] == [] and s["best"] is None and s["paired"] == {}
