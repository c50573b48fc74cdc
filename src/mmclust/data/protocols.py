"""Evaluation protocols: pure, seeded functions ``dataset -> dataset``.

A protocol never changes the features of a present view; it only decides which views are present
(``incomplete``, ``mixed_modal``) or which rows are kept (``train_test_split``). The same seed gives
the same result on every machine (``numpy.random.default_rng``).
"""

from __future__ import annotations

import numpy as np

from .dataset import DataError, MultiModalDataset

__all__ = ["paired", "incomplete", "mixed_modal", "train_test_split", "PROTOCOLS", "apply_protocol"]


def paired(ds: MultiModalDataset, seed: int | None = None) -> MultiModalDataset:
    """Every sample with every view (the papers' complete setting). Rows missing a view are an error."""
    if not ds.complete.all():
        row = int(np.argmin(ds.complete))
        raise DataError(f"{ds.name}: 'paired' protocol needs every view for every sample; row {row} lacks one")
    return ds


def incomplete(ds: MultiModalDataset, missing_rate: float, seed: int) -> MultiModalDataset:
    """CIGIT-C Section 4.1.3: a fraction ``missing_rate`` of samples loses one view.

    ``p = (n - m) / n`` with ``m`` the number of complete samples: ``round(p * n)`` samples are
    drawn without replacement, and each loses one of its views chosen uniformly (for two views:
    image or text with equal chance). Every sample keeps at least one view. Needs a paired input.
    """
    if not 0.0 <= missing_rate <= 1.0 or not np.isfinite(missing_rate):
        raise DataError(f"{ds.name}: missing_rate must be in [0, 1], got {missing_rate}")
    if len(ds.views) < 2:
        raise DataError(f"{ds.name}: 'incomplete' needs at least two views, got {list(ds.views)}")
    paired(ds)
    rng = np.random.default_rng(seed)
    n = ds.n_samples
    n_incomplete = int(round(missing_rate * n))
    rows = rng.choice(n, size=n_incomplete, replace=False)
    dropped_view = rng.integers(0, len(ds.views), size=n_incomplete)
    present = {v: np.ones(n, dtype=bool) for v in ds.views}
    for i, v in enumerate(ds.views):
        present[v][rows[dropped_view == i]] = False
    return ds.replace(present=present, name=f"{ds.name}")


def mixed_modal(ds: MultiModalDataset, seed: int) -> MultiModalDataset:
    """DM2C's mixed-modal setting: every sample keeps exactly one view, chosen uniformly."""
    if len(ds.views) < 2:
        raise DataError(f"{ds.name}: 'mixed_modal' needs at least two views, got {list(ds.views)}")
    paired(ds)
    rng = np.random.default_rng(seed)
    keep = rng.integers(0, len(ds.views), size=ds.n_samples)
    present = {v: keep == i for i, v in enumerate(ds.views)}
    return ds.replace(present=present)


def train_test_split(ds: MultiModalDataset, test_size: float | None = None, seed: int = 0,
                     test_index=None) -> tuple[MultiModalDataset, MultiModalDataset]:
    """Split rows into train and test sets.

    Either a fixed split (``test_index``: the row indices of the test set, e.g. the one shipped in
    ``wiki_roph.mat``) or a stratified random split with ``test_size`` (a fraction, e.g. 0.3 for
    CIGIT-C's Wikipedia protocol), seeded.
    """
    n = ds.n_samples
    if test_index is not None:
        test_index = np.asarray(test_index, dtype=np.int64)
        if test_index.size == 0 or test_index.min() < 0 or test_index.max() >= n:
            raise DataError(f"{ds.name}: test_index must hold row numbers in 0..{n - 1}")
        if np.unique(test_index).size != test_index.size:
            raise DataError(f"{ds.name}: test_index has duplicate rows")
    else:
        if test_size is None or not 0.0 < test_size < 1.0:
            raise DataError(f"{ds.name}: test_size must be a fraction in (0, 1), got {test_size}")
        rng = np.random.default_rng(seed)
        # stratified: the same fraction from each class, so no class vanishes from either side
        picks = []
        for c in range(ds.n_clusters):
            members = np.flatnonzero(ds.labels == c)
            take = int(round(test_size * members.size))
            picks.append(rng.choice(members, size=take, replace=False))
        test_index = np.sort(np.concatenate(picks))
    is_test = np.zeros(n, dtype=bool)
    is_test[test_index] = True
    train = ds.subset(np.flatnonzero(~is_test), name=f"{ds.name}")
    test = ds.subset(np.sort(test_index), name=f"{ds.name}")
    return train, test


PROTOCOLS = ("paired", "incomplete", "mixed_modal")


def apply_protocol(ds: MultiModalDataset, protocol: str, seed: int, missing_rate: float | None = None) -> MultiModalDataset:
    """Dispatch by name (the runner's entry point). Unknown names raise, listing the valid ones."""
    if protocol == "paired":
        return paired(ds)
    if protocol == "incomplete":
        if missing_rate is None:
            raise DataError("protocol 'incomplete' needs a missing_rate")
        return incomplete(ds, missing_rate, seed)
    if protocol == "mixed_modal":
        return mixed_modal(ds, seed)
    raise DataError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
