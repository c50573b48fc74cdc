"""Shared machinery for end-to-end reproductions: one result store per session, runs made once."""

import os

import pytest

from mmclust.repro.runner import RunSpec, execute_run
from mmclust.repro.store import ResultStore

E2E_RUNS = int(os.environ.get("MMCLUST_E2E_RUNS", "5"))


@pytest.fixture(scope="session")
def e2e_store(tmp_path_factory):
    """SQLite store for the session (``MMCLUST_E2E_DB`` keeps it across sessions, so reruns resume)."""
    path = os.environ.get("MMCLUST_E2E_DB") or tmp_path_factory.mktemp("e2e") / "results.db"
    return ResultStore(path)


@pytest.fixture(scope="session")
def ensure_runs(e2e_store, device):
    """``ensure_runs(method, dataset, variant=..., protocol=..., missing_rate=...)``: E2E_RUNS seeds, stored once."""

    def run(method, dataset, variant="full", protocol="paired", missing_rate=None):
        rows = []
        for seed in range(E2E_RUNS):
            spec = RunSpec(method=method, dataset=dataset, variant=variant, protocol=protocol,
                           missing_rate=missing_rate, seed=seed, device=device)
            res = execute_run(spec, store=e2e_store, quiet=True)
            rows.append(res)
        return rows

    return run
