"""Thread counts of a run: torch's intra-op pool and the BLAS / OpenMP pools (through threadpoolctl).

Parallel runs must not oversubscribe the cores: ``reproduce --jobs N`` gives each run ``cores // N`` threads
(or ``--threads T``), set inside the worker before any torch or NumPy work, because a fresh process would
otherwise start every pool at the machine's full width (measured on 2 cores: a DEC pre-training epoch took
14.6 s with two oversubscribed runs against 1.6 s with one thread each). A run that is not told a count
leaves the process's own setting (``OMP_NUM_THREADS`` or the library defaults) alone.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["available_cores", "threads_per_run", "default_jobs", "limit_threads", "current_threads"]


def available_cores() -> int:
    """Cores this process may use (CPU affinity and cgroup quotas counted, as joblib counts them)."""
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
    """Parallel runs of ``reproduce`` when ``--jobs`` is not given: one per core for local CPU runs (each then gets
    one thread from :func:`threads_per_run`), else 1: runs on a GPU would share the one device, and Dask's workers
    are their own parallelism.

    Measured on the 2-core developer machine (shared and loaded), BDGP Table 8 CIGIT-C cells capped at 2 epochs:
    25 and 29 s a run with 2 runs x 1 thread, 120 and 64 s for the same runs with 1 run x 2 threads (small
    batches scale poorly over threads, and a 2-thread run stalls whenever either core is busy).
    """
    from ..runtime import resolve_device

    if engine != "local":
        return 1
    try:
        dev = resolve_device(device)
    except (RuntimeError, ValueError):
        return 1  # a device this machine lacks: the device check reports it
    return available_cores() if dev.type == "cpu" else 1


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
