"""Test configuration shared by the whole suite.

* ``gpu`` tests (end-to-end reproductions on real features) run when CUDA is present, or on CPU
  when ``MMCLUST_E2E_DEVICE=cpu`` (slow but real); otherwise they skip saying what is missing.
* Hypothesis profiles: ``ci`` (few examples, derandomized: repeatable and fast) is the default;
  ``dev`` explores more. Choose with ``HYPOTHESIS_PROFILE``.
* ``data_dir`` fixture: the folder of real feature files (``MMCLUST_DATA``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The README passes MMCLUST_DATA as a relative path; tests that chdir into a temporary folder must still find
# the data, so it is pinned to an absolute path once, before any test runs.
if os.environ.get("MMCLUST_DATA"):
    os.environ["MMCLUST_DATA"] = str(Path(os.environ["MMCLUST_DATA"]).expanduser().resolve())


def e2e_device() -> str | None:
    """The device GPU-marked tests run on, or None when they must skip."""
    forced = os.environ.get("MMCLUST_E2E_DEVICE")
    if forced:
        return forced
    try:
        import torch
    except ImportError:
        return None
    return "cuda" if torch.cuda.is_available() else None


def pytest_collection_modifyitems(config, items):
    if e2e_device() is not None:
        return
    skip = pytest.mark.skip(reason="CUDA not available (set MMCLUST_E2E_DEVICE=cpu to run this reproduction on CPU)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from mmclust.data.registry import data_dir as _data_dir

    return _data_dir()


@pytest.fixture(scope="session")
def device() -> str:
    """Device for GPU-marked tests (cuda, or what MMCLUST_E2E_DEVICE says)."""
    return e2e_device() or "cpu"


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, fixed-seed generator per test: CPU tests are repeatable."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def cpp_compiler():
    """Skip, naming what is missing, where no C++ compiler exists to build torch's compiled CPU kernels (the
    minibatch layer's fused path). Only then: where one exists, a kernel that fails to build fails its test."""
    import os
    import shutil

    if not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c):
        pytest.skip("no C++ compiler (g++, c++, clang++ or $CXX) to build the fused CPU kernels")


def require_dataset(name: str):
    """Load a registered data set or skip the test naming the missing file."""
    from mmclust.data import registry

    spec = registry.get_spec(name)
    st = registry.status(name)
    if st == "missing":
        pytest.skip(f"data file {spec.file} for {name!r} not found in {registry.data_dir()} (set MMCLUST_DATA)")
    return registry.load(name)


@pytest.fixture(scope="session")
def load_real():
    """``load_real(name)``: the registered data set, or skip naming the missing file."""
    return require_dataset
