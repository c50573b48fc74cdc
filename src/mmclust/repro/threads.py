"""Thread counts of a run: torch's intra-op pool and the BLAS / OpenMP pools (through threadpoolctl).

Parallel runs must not oversubscribe the cores: ``reproduce --jobs N`` gives each run ``cores // N`` threads
(or ``--threads T``), set inside the worker before any torch or NumPy work, because a fresh process would
otherwise start every pool at the machine's full width (measured on 2 cores: a DEC pre-training epoch took
14.6 s with two oversubscribed runs against 1.6 s with one thread each). A run that is not told a count
leaves the process's own setting (``OMP_NUM_THREADS`` or the library defaults) alone.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["available_cores", "threads_per_run", "limit_threads", "current_threads"]


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
