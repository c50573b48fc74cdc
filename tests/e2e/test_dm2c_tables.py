"""DM2C Tables 2-4: one test per published cell; the paper's claims on stand-in data as findings.

Runs on CUDA, or on CPU with MMCLUST_E2E_DEVICE=cpu (slow but real). Five runs per configuration
(MMCLUST_E2E_RUNS), paper settings (``DM2C.params_for_dataset``), protocol ``mixed_modal`` seeded per run.

* With the paper's own features (``wiki_vgg_bow.npz``, ``nuswide10k_dm2c.npz`` supplied by the user) a cell
  gets a verdict and the test fails on ``below``.
* Without them, a Wikipedia cell runs on its stand-in (``wiki_roph``: the same 2,866 pairs with SIFT/text
  features) and is reported as ``features_differ``, never gated; a NUS-WIDE cell skips naming the missing file.
* The cells report the test rows of the official code's split (``split`` in ``dm2c.toml``); until the runner
  applies that split, runs are scored on the rows they were fitted on, and the printout says so.
"""

import numpy as np
import pytest

from mmclust.data.registry import get_spec, status
from mmclust.repro.references import load_references
from mmclust.repro.report import compare
from mmclust.repro.verdict import MIN_RUNS, band, verdict

pytestmark = pytest.mark.gpu

REFS = load_references("dm2c")
CELLS = sorted(REFS.testable(), key=lambda c: (c.dataset, c.table, c.variant, c.metric))


def _mean(rows, key):
    vals = [r["metrics"][key] for r in rows if r["status"] == "done"]
    return (float(np.mean(vals)) if vals else None), len(vals)


def _failures(rows):
    return "; ".join(str(r.get("error")) for r in rows if r["status"] != "done")


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"T{c.table}-{c.dataset}-{c.variant}-{c.metric}")
def test_cell(cell, ensure_runs, load_real, e2e_store):
    if status(cell.dataset) == "present":
        load_real(cell.dataset)
        rows = ensure_runs("dm2c", cell.dataset, variant=cell.variant, protocol=cell.protocol)
        mean, n = _mean(rows, cell.store_metric)
        assert n >= MIN_RUNS, f"only {n} successful runs: {_failures(rows)}"
        v = verdict(cell.value, mean, n, cell.std, cell.resolution)
        print(f"DM2C Table {cell.table} {cell.dataset} {cell.variant} {cell.metric}: published {cell.value:.4f}, "
              f"reproduced {mean:.4f} (n={n}), band ±{band(cell.std, cell.resolution):.3f} -> {v}"
              + (" [uncertain transcription]" if cell.uncertain else ""))
        if cell.uncertain:
            if v == "below":
                pytest.xfail(f"below, but the cell's row-to-variant mapping is uncertain: {cell.note}")
            return
        assert v != "below", f"{cell.metric}: reproduced {mean:.4f} < published {cell.value:.4f} - band"
        return
    if cell.stand_in is None:
        load_real(cell.dataset)  # skips naming the missing file
        pytest.skip(f"{get_spec(cell.dataset).file} absent and no stand-in")  # pragma: no cover - load_real skipped
    load_real(cell.stand_in)
    rows = ensure_runs("dm2c", cell.stand_in, variant=cell.variant, protocol=cell.protocol)
    assert sum(r["status"] == "done" for r in rows) >= MIN_RUNS, _failures(rows)
    cmp = compare("dm2c", e2e_store)
    (row,) = [r for r in cmp["rows"] if r["cell"] is cell or r["cell"] == cell]
    assert row["verdict"] == "features_differ" and row["run_dataset"] == cell.stand_in
    print(f"DM2C Table {cell.table} {cell.dataset} {cell.variant} {cell.metric}: published {cell.value:.4f} (VGG+BoW), "
          f"{cell.stand_in} stand-in {row['mean']:.4f} ± {row['std'] or 0:.4f} (n={row['n']}, all fitted rows) -> features_differ")


@pytest.mark.parametrize("claim", REFS.claims, ids=lambda c: c.id)
def test_claims_on_stand_ins_are_findings(claim, ensure_runs, load_real):
    """The paper's claims on stand-in data: run, printed, never gated (a claim may honestly not hold there)."""
    present = [d for d in claim.stand_ins if status(d) == "present"]
    if not present:
        load_real(claim.stand_ins[0])  # skips naming the missing file
    for dataset in present:
        load_real(dataset)
        means = {}
        for who in [claim.better, *claim.worse]:
            rows = ensure_runs(who["method"], dataset, variant=who["variant"], protocol=claim.protocol)
            mean, n = _mean(rows, claim.metric)
            assert n >= MIN_RUNS, _failures(rows)
            means[f"{who['method']}/{who['variant']}"] = mean
        better = means.pop(f"{claim.better['method']}/{claim.better['variant']}")
        holds = all(better > m + claim.tolerance for m in means.values())
        print(f"finding {claim.id} on {dataset}: {claim.metric} {better:.4f} vs "
              + ", ".join(f"{k} {v:.4f}" for k, v in means.items()) + f" -> {'holds' if holds else 'does not hold'}")
