"""Thread counts of a run: torch's intra-op pool and the BLAS / OpenMP pools (through threadpoolctl).

Parallel runs must not oversubscribe the cores: ``reproduce --jobs N`` gives each run ``cores // N`` threads
(or ``--threads T``), set inside the worker before any torch or NumPy work, because a fresh process would
otherwise start every pool at the machine's full width (measured on 2 cores: a DEC pre-training epoch took
14.6 s with two oversubscribed runs against 1.6 s with one thread each). A run that is not told a count
leaves the process's own setting (``OMP_NUM_THREADS`` or the library defaults) alone.

When ``--jobs`` is not given, :func:`run_layout` picks the layout: on the CPU with the local engine one
single-threaded run per core (measured faster than one run on every core, see :func:`default_jobs`), on a GPU
or with Dask one run at a time; never more runs at a time than runs to compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["available_cores", "threads_per_run", "default_jobs", "Layout", "run_layout", "limit_threads",
           "current_threads"]


def available_cores() -> int:
    """Cores this process may use: ``os.sched_getaffinity`` where there is one (else ``os.cpu_count``), also
    bounded by a cgroup CPU quota, as joblib counts them (the count its workers are sized by)."""
    from joblib import cpu_count

    return max(1, int(cpu_count()))


def threads_per_run(jobs: int = 1, threads: int | None = None) -> int | None:
    """Threads for each of ``jobs`` concurrent runs: ``threads`` when given, else ``cores // jobs`` (at least 1)
    when runs share the machine, else None (one run: keep the process's own setting)."""
    from ..data import DataError

    if jobs < 1:
        raise DataError(f"jobs must be >= 1, got {jobs}")
    if threads is not None:
        if threads < 1:
            raise DataError(f"threads must be >= 1, got {threads}")
        return int(threads)
    return max(1, available_cores() // jobs) if jobs > 1 else None


def default_jobs(device="auto", engine: str = "local") -> int:
    """Runs at a time when ``--jobs`` is not given: one per core for local runs on the CPU (each then gets
    ``cores // jobs`` = 1 thread from :func:`threads_per_run`), else 1: runs on a GPU would share the one device,
    and Dask's workers are their own parallelism. ``device`` "auto" is the CPU unless CUDA is available.

    Measured on the 2-core developer machine (shared and loaded), BDGP Table 8 CIGIT-C cells with capped epochs:
    25 and 29 s a run with 2 runs x 1 thread, 64 to 120 s a run with 1 run x 2 threads (small batches scale
    poorly over threads, and a 2-thread run stalls whenever either core is busy).
    """
    import torch

    if engine != "local":
        return 1
    if isinstance(device, torch.device):
        kind = device.type
    elif device == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        try:
            kind = torch.device(device).type
        except (RuntimeError, TypeError, ValueError):
            return 1  # not a device name: the device check reports it
    return available_cores() if kind == "cpu" else 1


@dataclass(frozen=True)
class Layout:
    """How a sweep runs: ``jobs`` runs at a time with ``threads`` torch / BLAS threads each (None: the process's
    own setting, one run at a time), out of ``cores``; ``default``: chosen because ``--jobs`` was not given."""

    jobs: int
    threads: int | None
    cores: int
    engine: str = "local"
    default: bool = False

    def describe(self) -> str:
        """One line, e.g. ``2 runs at a time x 1 thread (cores: 2; the default on the CPU, --jobs N to change)``."""
        if self.engine != "local":
            each = "the workers' own threads" if self.threads is None else _n(self.threads, "thread")
            return f"runs on the Dask workers x {each} each"
        if self.threads is None:
            import torch

            each = f"{_n(torch.get_num_threads(), 'thread')} (the process's own setting)"
        else:
            each = _n(self.threads, "thread")
        why = "; the default on the CPU, --jobs N to change" if self.default and self.jobs > 1 else ""
        return f"{_n(self.jobs, 'run')} at a time x {each} (cores: {self.cores}{why})"


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def run_layout(jobs: int | None = None, threads: int | None = None, device="auto", engine: str = "local",
               n_runs: int | None = None) -> Layout:
    """The layout of a sweep of ``n_runs`` runs: ``jobs`` as given (an explicit count wins over the default), else
    :func:`default_jobs` (divided by ``threads`` when only that is given, so ``--threads T`` alone never
    oversubscribes); never more runs at a time than ``n_runs`` (no idle worker is started); each run gets
    ``threads`` when given, else :func:`threads_per_run` of the runs at a time (so jobs x threads <= cores).
    With Dask, ``jobs`` plays no part and a run keeps the worker's own threads unless ``threads`` is given."""
    from ..data import DataError

    threads_per_run(1, threads)  # a bad --threads is refused before anything is sized by it
    default = jobs is None
    if default:
        jobs = default_jobs(device, engine)
        if threads is not None:
            jobs = max(1, jobs // threads)  # --threads T alone: as many T-thread runs as the cores hold
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise DataError(f"jobs must be >= 1, got {jobs!r}")
    if engine != "local":
        return Layout(1, threads_per_run(1, threads), available_cores(), engine, default)
    if n_runs is not None:
        jobs = max(1, min(jobs, int(n_runs)))
    return Layout(jobs, threads_per_run(jobs, threads), available_cores(), engine, default)


def limit_threads(n: int) -> Callable[[], None]:
    """Set torch's intra-op threads and every BLAS / OpenMP pool threadpoolctl finds to ``n``, for this process.

    Returns a function that puts the previous counts back (tests use it; a worker keeps its setting).
    """
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    limiter = threadpool_limits(limits=int(n))
    torch.set_num_threads(int(n))

    def restore() -> None:
        limiter.restore_original_limits()
        torch.set_num_threads(previous)

    return restore


def current_threads() -> dict:
    """``{"torch": n, "blas": {library: n, ...}}``: what this process runs with now (stored with every run)."""
    import torch
    from threadpoolctl import threadpool_info

    blas = {}
    for pool in threadpool_info():
        key = f"{pool['internal_api']}:{pool.get('prefix', '')}"
        blas[key] = int(pool["num_threads"])
    return {"torch": torch.get_num_threads(), "blas": blas}
