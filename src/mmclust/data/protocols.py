"""Evaluation protocols: pure, seeded functions ``dataset -> dataset``.

A protocol never changes the features of a present view; it only decides which views are present
(``incomplete``, ``mixed_modal``) or which rows are kept (``train_test_split``). The same seed gives
the same result on every machine (``numpy.random.default_rng``).
"""

from __future__ import annotations

import numpy as np

from .dataset import DataError, MultiModalDataset

__all__ = ["paired", "incomplete", "mixed_modal", "train_test_split", "count_test_rows", "parse_split", "split_test_size",
           "apply_split", "PROTOCOLS", "apply_protocol", "protocol_rows"]


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


def train_test_split(ds: MultiModalDataset, test_size: float | int | None = None, seed: int = 0,
                     test_index=None) -> tuple[MultiModalDataset, MultiModalDataset]:
    """Split rows into train and test sets.

    Either a fixed split (``test_index``: the row indices of the test set, e.g. the one shipped in
    ``wiki_roph.mat``) or a random split, seeded, with ``test_size`` a fraction in (0, 1) or a number of rows
    (CIGIT-C's BDGP: 500 of 2,500). With labels the split is stratified: each class gives its share of the test
    rows (largest-remainder rounding, so the total is exact); a class too small for a share of its own can be
    absent from one side (the runner still tells the method the whole data set's k). The labels serve only to
    draw the split, never a method's fit. Without labels the rows are drawn uniformly.
    """
    n = ds.n_samples
    if test_index is not None:
        test_index = np.asarray(test_index, dtype=np.int64)
        if test_index.size == 0 or test_index.min() < 0 or test_index.max() >= n:
            raise DataError(f"{ds.name}: test_index must hold row numbers in 0..{n - 1}")
        if np.unique(test_index).size != test_index.size:
            raise DataError(f"{ds.name}: test_index has duplicate rows")
        if test_index.size == n:
            raise DataError(f"{ds.name}: test_index holds every row; nothing is left to train on")
    else:
        n_test = count_test_rows(n, test_size, ds.name)
        rng = np.random.default_rng(seed)
        if ds.labels is None:
            test_index = np.sort(rng.choice(n, size=n_test, replace=False))
        else:
            sizes = np.bincount(ds.labels)
            exact = n_test * sizes / n
            take = np.floor(exact).astype(np.int64)
            # largest remainder: the rows the floor left over go to the classes that lost most to it
            for c in np.argsort(-(exact - take), kind="stable")[: n_test - int(take.sum())]:
                take[c] += 1
            picks = [rng.choice(np.flatnonzero(ds.labels == c), size=int(t), replace=False) for c, t in enumerate(take)]
            test_index = np.sort(np.concatenate(picks))
    is_test = np.zeros(n, dtype=bool)
    is_test[test_index] = True
    train = ds.subset(np.flatnonzero(~is_test), name=f"{ds.name}")
    test = ds.subset(np.sort(test_index), name=f"{ds.name}")
    return train, test


def count_test_rows(n: int, test_size, name: str = "dataset") -> int:
    """Test rows of ``n`` for a ``test_size`` given as a row count or a fraction in (0, 1); raises DataError when
    either side would be empty."""
    if isinstance(test_size, bool) or test_size is None:
        raise DataError(f"{name}: test_size must be a fraction in (0, 1) or a row count, got {test_size!r}")
    if isinstance(test_size, (int, np.integer)):
        count = int(test_size)
    elif 0.0 < float(test_size) < 1.0:
        count = int(round(float(test_size) * n))
    else:
        raise DataError(f"{name}: test_size must be a fraction in (0, 1) or a row count, got {test_size!r}")
    if not 1 <= count < n:
        raise DataError(f"{name}: a test set of {count} rows out of {n} leaves no train or no test rows")
    return count


def split_test_size(split) -> int | float | None:
    """The ``test_size`` (rows or a fraction) a split asks of :func:`train_test_split`; None for no split or for
    the data set's own fixed split."""
    split = parse_split(split)
    if split is None or split == "dataset":
        return None
    key, _, value = split.partition("=")
    return int(value) if key == "test" else float(value)


def parse_split(split) -> str | None:
    """Canonical text of a split setting: None (fit and score on all rows), ``"test=500"`` (a row count),
    ``"test_fraction=0.25"`` or ``"dataset"`` (the data set's own fixed split). Accepts the reference files'
    forms ``{test = 500}``, ``{test_fraction = 0.25}``, ``"dataset"``, and the canonical text itself."""
    if split is None or split == "none":
        return None
    if isinstance(split, str):
        if split == "dataset":
            return split
        key, _, value = split.partition("=")
        try:
            split = {key: int(value) if key == "test" else float(value)}
        except ValueError:
            raise DataError(f"split {split!r}: expected test=N, test_fraction=F or dataset") from None
    if isinstance(split, dict) and len(split) == 1:
        ((key, value),) = split.items()
        if key == "test" and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return f"test={value}"
        if key == "test_fraction" and isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1:
            return f"test_fraction={float(value):.10g}"
    raise DataError(f"split {split!r}: expected {{test = N}} (N >= 1 rows), {{test_fraction = F}} (0 < F < 1) or \"dataset\"")


def apply_split(ds: MultiModalDataset, split: str | None, seed: int, fixed_test_index=None):
    """``(train, test)`` for a canonical split (see :func:`parse_split`); ``(ds, None)`` without one.

    Run after the missing-view protocol: rows lose views over the whole data set first, then train and test
    rows are drawn, so both sides carry the same missing-view process (each about the protocol's rate).
    """
    split = parse_split(split)
    if split is None:
        return ds, None
    if split == "dataset":
        if fixed_test_index is None:
            raise DataError(f"{ds.name}: split 'dataset' needs a data set that ships its own train/test split")
        return train_test_split(ds, test_index=fixed_test_index)
    return train_test_split(ds, test_size=split_test_size(split), seed=seed)


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


def protocol_rows(ds: MultiModalDataset, protocol: str, seed: int, missing_rate: float | None = None, split=None,
                  fixed_test_index=None):
    """``(train, test)`` rows of one run: the missing-view protocol on every row first, then the split, both drawn
    from the run's ``seed`` (``test`` is None without a split). The runner's one entry point, so that a change to
    how a run's rows are drawn changes the code identity of every run."""
    return apply_split(apply_protocol(ds, protocol, seed=seed, missing_rate=missing_rate), split, seed=seed,
                       fixed_test_index=fixed_test_index)
