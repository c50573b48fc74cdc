"""Reference files: every file validates, sample cells match the papers' text, malformed files fail loudly."""

import re
from pathlib import Path

import pytest

from mmclust.repro.references import PAPERS, ReferenceError, load_references

PAPERS_DIR = Path(__file__).resolve().parents[3] / "shared" / "papers"


@pytest.mark.parametrize("paper", PAPERS)
def test_every_file_validates(paper):
    refs = load_references(paper)
    assert refs.paper == paper and refs.testable() and refs.claims
    for c in refs.cells:
        assert c.value is None or 0 <= c.value <= 1


def test_cell_counts_cover_the_named_tables():
    jecl = load_references("jecl")
    # Table II: 16 rows x 4 data sets x 3 metrics
    assert len(jecl.cells) == 16 * 4 * 3
    assert {c.variant for c in jecl.find(method="jecl")} == {"full", "no_align", "no_regularizer", "no_align_no_regularizer"}
    cig = load_references("cigit_c")
    assert len(cig.find(method="cigit_c", dataset="bdgp", metric="acc")) == 4
    assert len(cig.find(method="cigit_c", dataset="wiki_vgg_bert")) == 8
    assert len(load_references("dm2c").find(method="dm2c")) == 2 * 5 + 2 * 3 * 5
    assert len(load_references("dmim").find(method="dmim")) == 4 * 2 + 4 * 4
    assert len(load_references("mca").find(method="mca", table="1")) == 15
    # Table 1: 28 reference rows (incl. SIC's three and the bold MCA row), 15 cells each, minus 51 cells printed "–"
    assert len(load_references("mca").find(table="1")) == 15 + 28 * 15 - 51


# (paper, file, selector, fraction, a string that must be in the paper's text)
SPOT_CHECKS = [
    ("jecl", "jecl.txt", dict(method="jecl", variant="full", dataset="coco_cross", metric="acc"), 0.929,
     "JECL 0.929 0.908 0.934 0.675"),
    ("jecl", "jecl.txt", dict(method="jecl", variant="no_regularizer", dataset="rgbd", metric="ari"), 0.327,
     "w/o regularizer 0.894 0.890 0.889 0.624 0.777 0.610 0.513 0.620 0.376 0.520 0.433 0.327"),
    ("cigit_c", "cigit-c.txt", dict(method="cigit_c", dataset="bdgp", metric="acc", missing_rate=0.5), 0.6274, "62.74"),
    ("cigit_c", "cigit-c.txt", dict(method="cigit_c", dataset="bdgp", metric="nmi", missing_rate=0.7), 0.1678, "16.78"),
    ("dm2c", "dm2c.txt", dict(method="dm2c", variant="full", dataset="wiki_vgg_bow", metric="purity", table="2"), 0.3075,
     "Ours\t0.2720\t0.0558\t0.1543\t0.1878\t0.3075"),
    ("dmim", "dmim.txt", dict(method="dmim", variant="no_over", dataset="dmim_iapr", metric="acc"), 0.5148,
     "Without Over 0.5305 0.5517 0.5148 0.4678"),
    ("mca", "mca.txt", dict(method="mca", variant="full", dataset="mca_imagenet_dogs", metric="acc", table="1"), 0.749,
     "74.9 <sub>2.5</sub>"),
    ("mca", "mca.txt", dict(method="GCC", dataset="mca_cifar10", metric="acc"), 0.856,
     "GCC\t78.8\t68.4\t63.1\t85.6\t76.4"),
]


@pytest.mark.parametrize("paper,fname,sel,value,text", SPOT_CHECKS)
def test_spot_check_against_paper_text(paper, fname, sel, value, text):
    (cell,) = load_references(paper).find(**sel)
    assert cell.value == pytest.approx(value)
    path = PAPERS_DIR / fname
    if not path.is_file():
        pytest.skip(f"paper text {fname} not found beside the project")
    assert text in path.read_text(encoding="utf-8")


def test_mca_std_and_resolution():
    (cell,) = load_references("mca").find(method="mca", variant="full", dataset="mca_imagenet_dogs", metric="acc", table="1")
    assert cell.std == pytest.approx(0.025) and cell.resolution == pytest.approx(0.0005)


def test_unreadable_cell_is_marked():
    (cell,) = load_references("cigit_c").find(method="cigit_c", dataset="bdgp", metric="nmi", missing_rate=0.3)
    assert cell.value is None and cell.uncertain and "truncat" in cell.note


GOOD = """
[meta]
paper = "toy"
unit = "fraction"
direction = "higher"

[[result]]
table = "1"
method = "kmeans"
variant = "full"
dataset = "synthetic"
protocol = "paired"
metric = "acc"
printed = "0.50"
value = 0.5
"""


@pytest.mark.parametrize("mutation,msg", [
    (lambda s: s.replace('metric = "acc"', 'metric = "acc"\ncolour = "red"'), r"#1 .*unknown key\(s\) \['colour'\]"),
    (lambda s: s.replace("value = 0.5", "value = 50.0").replace('"0.50"', '"50"'), "outside \\[0, 1\\]"),
    (lambda s: s + s.split("\n", 6)[-1].replace("[meta]", ""), "#2 .*duplicate cell"),
    (lambda s: s.replace('method = "kmeans"', 'method = "magic"'), "unknown method 'magic'"),
    (lambda s: s.replace('dataset = "synthetic"', 'dataset = "atlantis"'), "unknown dataset 'atlantis'"),
    (lambda s: s.replace("value = 0.5", "value = 0.6"), "does not match printed"),
    (lambda s: s.replace('protocol = "paired"', 'protocol = "incomplete"'), "missing_rate is required"),
    (lambda s: s.replace('unit = "fraction"', 'unit = "permille"'), "unit must be"),
    (lambda s: s.replace("[[result]]", "[[result"), "not valid TOML"),
    (lambda s: s.replace('value = 0.5\n', '').replace('printed = "0.50"\n', ''), "only an uncertain cell"),
])
def test_malformed_files_fail_naming_file_and_entry(tmp_path, mutation, msg):
    path = tmp_path / "toy.toml"
    path.write_text(GOOD)
    assert load_references(path).cells[0].value == 0.5
    path.write_text(mutation(GOOD))
    with pytest.raises(ReferenceError, match=msg) as err:
        load_references(path)
    assert "toy.toml" in str(err.value)


def test_unknown_paper():
    with pytest.raises(ReferenceError, match="unknown paper 'xyz'; valid: jecl"):
        load_references("xyz")
