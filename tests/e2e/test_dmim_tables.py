"""DMIM Tables 2 and 3: one test per published cell of DMIM (full model and its ablations).

The paper's features (IAPR, ESP-Game, MIRFlickr, NUS-WIDE: VGG-16 + BERT, each PCA-reduced to 100-d) are not
redistributable; each test skips naming the file to supply (``dmim_<name>.npz``, see ``mmclust datasets --all``).
With the file present it trains with the paper's settings (the estimator's defaults: lr 5e-5, 500 full-batch
steps, last step's labels), 5 runs (MMCLUST_E2E_RUNS), and fails on ``below``. Table 3's cells are uncertain
(the uniform term in the ablations is unstated): a ``below`` there is an expected failure with the cell's note.
The ``official_code`` variant (lr 5e-4 and the code's estimators) is run and printed beside Table 2, never gated.
The paper's claim "full DMIM beats each ablation" and DMIM vs k-means on the stand-ins (uci_digits, scene15,
wiki_sift_lda) are findings: run, printed and stored, never a pass/fail gate.
Runs on CUDA, or on CPU with MMCLUST_E2E_DEVICE=cpu (slow but real).
"""

import numpy as np
import pytest

from mmclust.repro.references import load_references
from mmclust.repro.verdict import MIN_RUNS, band, greater_claim_outcome, verdict

pytestmark = pytest.mark.gpu

REFS = load_references("dmim")
CELLS = sorted(REFS.testable(), key=lambda c: (c.table, c.variant, c.dataset, c.metric))
ABLATIONS = ("no_over", "no_sie", "no_over_no_sie")


def _values(rows, key):
    vals = [r["metrics"][key] for r in rows if r["status"] == "done"]
    assert len(vals) >= MIN_RUNS, [r.get("error") for r in rows if r["status"] != "done"]
    return vals


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"table{c.table}-{c.variant}-{c.dataset}-{c.metric}")
def test_table_cell(cell, ensure_runs, load_real):
    load_real(cell.dataset)  # skips: "data file dmim_<name>.npz ... not found"
    vals = _values(ensure_runs("dmim", cell.dataset, variant=cell.variant), cell.store_metric)
    mean = float(np.mean(vals))
    v = verdict(cell.value, mean, len(vals), cell.std, cell.resolution)
    line = (f"DMIM Table {cell.table} {cell.variant} {cell.dataset} {cell.metric}: published {cell.value:.4f}, "
            f"reproduced {mean:.4f} (n={len(vals)}), band ±{band(cell.std, cell.resolution):.3f} -> {v}")
    if cell.table == "2":
        code = _values(ensure_runs("dmim", cell.dataset, variant="official_code"), cell.store_metric)
        line += f"; official_code settings {np.mean(code):.4f} (beside, not gated)"
    print(line)
    if v == "below" and cell.uncertain:
        pytest.xfail(f"below an uncertain cell: {cell.note}")
    assert v != "below", line


@pytest.mark.parametrize("dataset", ["uci_digits", "scene15", "wiki_sift_lda"])
def test_claims_on_stand_in_data_are_findings(dataset, ensure_runs, load_real):
    load_real(dataset)
    means = {}
    for variant in ("full", *ABLATIONS, "official_code"):
        vals = _values(ensure_runs("dmim", dataset, variant=variant), "acc")
        means[("dmim", variant)] = (float(np.mean(vals)), len(vals))
    km = _values(ensure_runs("kmeans", dataset, variant="concat"), "acc")
    means[("kmeans", "concat")] = (float(np.mean(km)), len(km))
    (claim,) = [c for c in REFS.claims if c.id == "dmim_beats_ablations"]
    full, n_full = means[("dmim", "full")]
    outcome = greater_claim_outcome([(full, n_full, *means[("dmim", v)]) for v in ABLATIONS], claim.tolerance)
    print(f"finding on {dataset} ({claim.text}): full {full:.3f} vs "
          + ", ".join(f"{v} {means[('dmim', v)][0]:.3f}" for v in ABLATIONS) + f" -> {outcome}")
    for key in (("dmim", "official_code"), ("kmeans", "concat")):
        m, n = means[key]
        print(f"finding on {dataset}: DMIM full {full:.3f} vs {key[0]}/{key[1]} {m:.3f} "
              f"-> {greater_claim_outcome([(full, n_full, m, n)], claim.tolerance)}")
