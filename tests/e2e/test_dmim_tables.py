"""DMIM Tables 2 and 3: one test per published cell of DMIM (full model and its ablations).

The paper's features (IAPR, ESP-Game, MIRFlickr, NUS-WIDE: VGG-16 + BERT, each PCA-reduced to 100-d) are not
redistributable; each test skips naming the file to supply (``dmim_<name>.npz``, see ``mmclust datasets --all``).
With the file present it trains with the paper's settings (the estimator's defaults: lr 5e-5, 500 full-batch
steps, last step's labels), the paper's 20 runs (MMCLUST_E2E_RUNS overrides); it passes only on ``reproduced``,
fails on ``below`` / ``unstable``, and is xfail on ``above`` / ``inconclusive``. Table 3's cells are uncertain
(the uniform term in the ablations is unstated): a ``below`` there is an expected failure with the cell's note.
The ``official_code`` variant (lr 5e-4 and the code's estimators) is run and printed beside Table 2, never gated.
The paper's claim "full DMIM beats each ablation" and DMIM vs k-means on the stand-ins (uci_digits, scene15,
wiki_sift_lda) are findings: run, printed and stored, never a pass/fail gate.
Runs on CUDA, or on CPU with MMCLUST_E2E_DEVICE=cpu (slow but real).
"""

import numpy as np
import pytest

from mmclust.repro.references import load_references
from mmclust.repro.verdict import MIN_RUNS, assess, greater_claim_outcome

from .conftest import check_verdict, runs_for

pytestmark = pytest.mark.gpu

REFS = load_references("dmim")
CELLS = sorted(REFS.testable(), key=lambda c: (c.table, c.variant, c.dataset, c.metric))


def _by_seed(got, key):
    assert len(got["rows"]) >= MIN_RUNS, f"{got['failed']} failed runs"
    return {r["seed"]: r["metrics"][key] for r in got["rows"]}


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"table{c.table}-{c.variant}-{c.dataset}-{c.metric}")
def test_table_cell(cell, ensure_runs, load_real):
    load_real(cell.dataset)  # skips: "data file dmim_<name>.npz ... not found"
    got = ensure_runs("dmim", cell.dataset, variant=cell.variant, runs=runs_for(cell))
    label = f"DMIM Table {cell.table} {cell.variant} {cell.dataset} {cell.metric}"
    if cell.table == "2":
        code = _by_seed(ensure_runs("dmim", cell.dataset, variant="official_code", runs=runs_for(cell)), cell.store_metric)
        label += f" (official_code settings, beside and not gated: {np.mean(list(code.values())):.4f})"
    a = assess(cell.value, [r["metrics"][cell.store_metric] for r in got["rows"]], cell.std, cell.resolution, got["failed"])
    if a.verdict == "below" and cell.uncertain:
        pytest.xfail(f"{label}: below an uncertain cell: {cell.note}")
    check_verdict(cell, got, label)


@pytest.mark.parametrize("claim,dataset", [(c, d) for c in REFS.claims for d in c.stand_ins],
                         ids=lambda x: getattr(x, "id", x))
def test_claims_on_stand_in_data_are_findings(claim, dataset, ensure_runs, load_real):
    load_real(dataset)
    split = REFS.split_for(dataset, claim)
    def acc_of(who):
        return _by_seed(ensure_runs(who["method"], dataset, variant=who["variant"], protocol=claim.protocol, split=split),
                        claim.metric)

    full = acc_of(claim.better)
    worse = {f"{w['method']}/{w['variant']}": acc_of(w) for w in claim.worse}

    def diffs(other):
        return [full[s] - other[s] for s in sorted(set(full) & set(other))]

    outcome = greater_claim_outcome([diffs(v) for v in worse.values()], claim.tolerance)
    print(f"finding {claim.id} on {dataset} ({claim.text}): full {np.mean(list(full.values())):.3f} vs "
          + ", ".join(f"{k} {np.mean(list(v.values())):.3f}" for k, v in worse.items()) + f" -> {outcome}")
    for variant in REFS.beside:  # the authors' code's settings, printed beside and never gated
        code = acc_of({"method": "dmim", "variant": variant})
        print(f"finding on {dataset}: dmim/{variant} {np.mean(list(code.values())):.3f} "
              f"(full minus it, seed by seed: {np.mean(diffs(code)):+.3f})")
