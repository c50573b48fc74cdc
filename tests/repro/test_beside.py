"""``[meta] beside``: variants of the paper's own method (the authors' code's settings) run next to its cells
and claims, and are reported as findings, never verdicts."""

import pytest

from mmclust.repro import report
from mmclust.repro.references import ReferenceError, load_references, run_plan
from mmclust.repro.report import compare, render_markdown
from mmclust.repro.runner import RunSpec, execute_run
from mmclust.repro.store import ResultStore

BESIDE = """
[meta]
paper = "kmeans"
unit = "fraction"
direction = "higher"
beside = ["image"]

[[result]]
table = "1"
method = "kmeans"
variant = "concat"
dataset = "synthetic"
protocol = "paired"
metric = "acc"
printed = "0.90"
value = 0.9

[[claim]]
id = "concat_beats_text"
kind = "greater"
metric = "acc"
tolerance = 0.0
protocol = "paired"
datasets = []
stand_ins = ["synthetic"]
better = { method = "kmeans", variant = "concat" }
worse = [{ method = "kmeans", variant = "text" }]
text = "toy"
source = "toy"
"""


@pytest.fixture(autouse=True)
def _fresh_identity_caches():
    report._paper_config.cache_clear()
    yield
    report._paper_config.cache_clear()


def _refs(tmp_path, text=BESIDE):
    path = tmp_path / "kmeans.toml"
    path.write_text(text)
    return path


def test_beside_variants_are_planned_only_as_findings(tmp_path):
    refs = load_references(_refs(tmp_path))
    assert refs.beside == ("image",)
    plain, _ = run_plan(refs)
    assert {p["variant"] for p in plain} == {"concat", "text"}
    plan, _ = run_plan(refs, findings=True)
    beside = [p for p in plan if p["variant"] == "image"]
    assert len(beside) == 1 and beside[0]["verdict_kind"] == "finding" and "beside" in beside[0]["origin"]
    # the cell's own configuration keeps its verdict kind
    assert [p["verdict_kind"] for p in plan if p["variant"] == "concat"] == ["test"]


def test_beside_runs_are_shown_beside_the_cell_and_never_feed_its_verdict(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    for seed in range(3):
        execute_run(RunSpec("kmeans", "synthetic", variant="image", protocol="paired", seed=seed), store=store)
    cmp = compare(str(_refs(tmp_path)), store)
    (row,) = cmp["rows"]
    assert row["n"] == 0 and row["verdict"] == "inconclusive"  # no concat runs: the image runs must not count
    (reading,) = cmp["readings"]
    assert reading["n"] == 3 and "variant image" in reading["what"]
    image_accs = [r["metrics"]["acc"] for r in store.query()]
    assert reading["mean"] == pytest.approx(sum(image_accs) / 3)
    finding_variants = {(f["variant"], f["n"]) for f in cmp["findings"]}
    assert ("image", 3) in finding_variants and ("concat", 0) in finding_variants
    assert "variant image on synthetic" in render_markdown(cmp, [])


def test_beside_only_follows_the_papers_own_method(tmp_path):
    text = BESIDE.replace('paper = "kmeans"', 'paper = "toy"')
    plan, _ = run_plan(load_references(_refs(tmp_path, text)), findings=True)
    assert "image" not in {p["variant"] for p in plan}


@pytest.mark.parametrize("value", ['"image"', "[1]", '[""]'])
def test_malformed_beside_is_an_error_naming_the_file(tmp_path, value):
    with pytest.raises(ReferenceError, match=r"kmeans.toml: \[meta\] beside"):
        load_references(_refs(tmp_path, BESIDE.replace('beside = ["image"]', f"beside = {value}")))


@pytest.mark.parametrize("paper", ["dm2c", "dmim"])
def test_the_authors_code_runs_beside_dm2c_and_dmim(paper):
    refs = load_references(paper)
    assert refs.beside == ("official_code",)


def test_a_claims_split_applies_where_no_cell_names_the_data(tmp_path):
    text = BESIDE.replace('stand_ins = ["synthetic"]', 'stand_ins = ["synthetic", "scene15"]\nsplit = { test = 40 }')
    refs = load_references(_refs(tmp_path, text))
    (claim,) = refs.claims
    assert claim.split == "test=40"
    assert refs.split_for("synthetic", claim) is None  # a cell names it: the cell's protocol (no split) wins
    assert refs.split_for("scene15", claim) == "test=40" and refs.split_for("scene15") is None


def test_a_malformed_claim_split_is_an_error_naming_the_claim(tmp_path):
    text = BESIDE.replace('stand_ins = ["synthetic"]', 'stand_ins = ["synthetic"]\nsplit = { test = -3 }')
    with pytest.raises(ReferenceError, match=r"kmeans.toml: \[\[claim\]\] #1 \(concat_beats_text\)"):
        load_references(_refs(tmp_path, text))


def test_dm2c_claims_read_wiki_sift_lda_under_the_papers_one_third_test_split():
    refs = load_references("dm2c")
    for claim in refs.claims:
        assert refs.split_for("wiki_sift_lda", claim) == "test_fraction=0.3333333333"
        assert refs.split_for("wiki_roph", claim) == "dataset"


STAND_IN = """
[meta]
paper = "toy"
unit = "fraction"
direction = "higher"

[[result]]
table = "1"
method = "kmeans"
variant = "concat"
dataset = "pascal"
stand_in = "synthetic"
split = { test = 200 }
protocol = "paired"
metric = "acc"
printed = "0.90"
value = 0.9
"""


def test_on_a_stand_in_the_cells_own_split_is_the_one_read_for_its_row(tmp_path):
    """The all-rows reading runs on the stand-in too; it is a finding and must never replace the cell's primary
    reading (held-out rows) in the main table."""
    path = tmp_path / "toy.toml"
    path.write_text(STAND_IN)
    plan, _ = run_plan(load_references(path), findings=True)
    kinds = {(p["split"], p["verdict_kind"]) for p in plan}
    assert kinds == {("test=200", "features_differ"), (None, "finding")}
    store = ResultStore(tmp_path / "r.db")
    for seed in range(3):  # only the all-rows reading is stored
        execute_run(RunSpec("kmeans", "synthetic", variant="concat", protocol="paired", seed=seed), store=store)
    (row,) = compare(str(path), store)["rows"]
    assert row["split"] == "test=200" and row["n"] == 0
