"""Runs: one configuration in, one stored result out; grids of them on a local or Dask engine.

A run is ``(method, variant, dataset, protocol, missing_rate, split, seed, overrides)``. Its identity
(``run_id``) is a hash of those fields *with every hyperparameter resolved*, the data file's sha256 and a
fingerprint of the code that computes it (:mod:`mmclust.repro.code_identity`), so changing a default, the
data or the method's code starts new runs and never mixes them into old ones. ``config_id`` is the same
hash without the seed: the runs one verdict may average.

With a ``split`` the run fits on the training rows, assigns the test rows with ``predict`` and stores the test
metrics as the run's metrics (the papers' held-out protocol) with the training metrics under ``"train"``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..data import DataError, parse_split
from ..data import registry as _registry
from ..data.protocols import PROTOCOLS, protocol_rows, split_test_size, count_test_rows
from ..metrics import score
from .code_identity import code_fingerprint
from .store import Heartbeat, ResultStore, new_owner
from . import validate as _validate
from .threads import current_threads, limit_threads, run_layout

__all__ = ["RunSpec", "execute_run", "reproduce", "open_store_for", "build_grid", "run_id_of", "config_id_of",
           "environment_fingerprint"]

_EPOCH_PARAMS = ("max_epochs", "pretrain_epochs", "gan_pretrain_epochs")
# Parameters that say where/how verbosely a run happens, not what it computes: not part of the identity.
_NON_IDENTITY_PARAMS = ("device", "verbose")


def _methods():
    from ..methods import METHODS

    return METHODS


@dataclass(frozen=True)
class RunSpec:
    method: str
    dataset: str
    variant: str = "full"
    protocol: str = "paired"
    missing_rate: float | None = None
    seed: int = 0
    overrides: dict = field(default_factory=dict)
    device: str = "auto"
    split: str | None = None  # None: fit and score on all rows; else see mmclust.data.protocols.parse_split
    # A user's file (mmclust.data.files) instead of a registry entry: ``dataset`` is then only its display name, the
    # identity holds the file's sha256 and the options it is read with (views, views_key, labels_key, samples_in)
    data: str | None = None
    data_options: dict = field(default_factory=dict)

    def method_class(self):
        methods = _methods()
        if self.method not in methods:
            raise DataError(f"unknown method {self.method!r}; valid: {', '.join(sorted(methods))}")
        return methods[self.method]

    def validate(self) -> "RunSpec":
        """Every name known and every setting possible; raises DataError naming the problem."""
        cls = self.method_class()
        variants = getattr(cls, "VARIANTS", {"full": {}})
        if self.variant not in variants:
            raise DataError(f"method {self.method!r} has no variant {self.variant!r}; valid: {', '.join(variants)}")
        n_samples = _user_file(self).dataset.n_samples if self.data is not None else _registry.get_spec(self.dataset).n_samples
        if self.protocol not in PROTOCOLS:
            raise DataError(f"unknown protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if self.protocol == "incomplete":
            if self.missing_rate is None or not 0.0 <= self.missing_rate <= 1.0:
                raise DataError(f"protocol 'incomplete' needs --missing-rate in [0, 1], got {self.missing_rate}")
        elif self.missing_rate is not None:
            raise DataError(f"missing_rate only applies to protocol 'incomplete', not {self.protocol!r}")
        split = parse_split(self.split)
        if split == "dataset" and (self.data is not None or not _registry.get_spec(self.dataset).fixed_split):
            raise DataError(f"split 'dataset': {self.dataset!r} ships no train/test split of its own")
        if split_test_size(split) is not None:  # checked before any run: a split too large is a usage error
            count_test_rows(n_samples, split_test_size(split), self.dataset)
        if split is not None and not hasattr(cls, "predict"):
            raise DataError(f"method {self.method!r} has no predict, so it cannot be scored on held-out rows")
        _validate.check_seed(self.seed)
        _validate.check_device(self.device, available=False)  # a name torch knows; presence is checked where it runs
        _validate.check_params(cls, self.resolved_params())
        return self

    def resolved_params(self) -> dict:
        """Constructor defaults < the paper's per-dataset settings < the variant's flags < overrides."""
        cls = self.method_class()
        params = cls().get_params()
        params.update(getattr(cls, "params_for_dataset", lambda name: {})(self.dataset))
        params.update(getattr(cls, "VARIANTS", {"full": {}})[self.variant])
        unknown = set(self.overrides) - set(params)
        if unknown:
            raise DataError(f"method {self.method!r} has no parameter(s) {sorted(unknown)}; valid: {', '.join(sorted(params))}")
        params.update(self.overrides)
        if "random_state" in params:
            params["random_state"] = self.seed
        return params

    def identity(self, data_sha256: str | None = None) -> dict:
        """The run's identity; ``data_sha256`` is used only where the data file cannot be hashed now (absent)."""
        params = {k: v for k, v in self.resolved_params().items() if k not in _NON_IDENTITY_PARAMS}
        cls = self.method_class()
        return {
            "method": self.method, "variant": self.variant, "dataset": self.dataset, "protocol": self.protocol,
            "missing_rate": None if self.missing_rate is None else round(float(self.missing_rate), 6),
            "split": parse_split(self.split), "seed": int(self.seed), "overrides": dict(self.overrides),
            "params": params, "data_sha256": _data_sha256(self.dataset, data_sha256) if self.data is None else _user_file(self).sha256,
            "code": code_fingerprint(cls.__module__, cls.__name__),
            # a user's file: how it is read is part of what a run computes (never the path: a moved file resumes)
            **({} if self.data is None else {"data_options": _canonical_options(self.data_options),
                                             "loader": code_fingerprint("mmclust.data.files", "load_views_file")}),
        }


def _data_sha256(dataset: str, recorded: str | None) -> str:
    try:
        return _registry.data_sha256(dataset)
    except FileNotFoundError:
        if recorded is None:
            raise
        return recorded


def _hash(blob: dict) -> str:
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def _ids(ident: dict) -> tuple[str, str]:
    """``(run_id, config_id)`` of an identity: config_id leaves the seed out (and the seed-valued random_state)."""
    ident = {k: v for k, v in ident.items() if k != "overrides"}  # folded into params: {} == {"x": default}
    if "data_options" in ident:  # a user's file: its sha256 and read options identify it; its name (the file's
        ident.pop("dataset", None)  # stem) is a label only, so a renamed file resumes as a moved one does
    config = {k: v for k, v in ident.items() if k != "seed"}
    config["params"] = {k: v for k, v in ident["params"].items() if k != "random_state"}
    return _hash(ident), _hash(config)[:24]


def run_id_of(spec: RunSpec) -> str:
    return _ids(spec.identity())[0]


def config_id_of(spec: RunSpec) -> str:
    """The configuration a run belongs to: its identity without the seed. One verdict = one config_id."""
    return _ids(spec.identity())[1]


def _cached_dataset(name: str):
    """The registry data set ``name`` as the current settings find it (data folder, WordNet file): one copy per
    process and per settings, since data sets are immutable (read-only arrays). Keyed by where the files are
    looked up, so a change of ``MMCLUST_DATA`` between two sweeps of one process never serves the old folder's
    data under the new file's sha256."""
    return _load_from(name, str(_registry.data_dir().resolve()), os.environ.get("MMCLUST_WORDNET", ""))


@functools.lru_cache(maxsize=16)
def _load_from(name: str, data_dir: str, wordnet: str):
    # data_dir and wordnet are the cache key only; load() reads the same settings from the environment
    return _registry.load(name)


_cached_dataset.cache_clear = _load_from.cache_clear  # forget every copy (tests; a worker whose settings change)


_FILE_OPTIONS = ("views", "views_key", "labels_key", "samples_in")


def _canonical_options(options: dict) -> dict:
    unknown = set(options) - set(_FILE_OPTIONS)
    if unknown:
        raise DataError(f"unknown data option(s) {sorted(unknown)}; valid: {', '.join(_FILE_OPTIONS)}")
    out = {k: options.get(k) for k in _FILE_OPTIONS}
    out["samples_in"] = out["samples_in"] or "auto"
    out["views"] = None if out["views"] is None else [str(v) for v in out["views"]]
    return out


@functools.lru_cache(maxsize=8)
def _cached_file(path: str, size: int, mtime_ns: int, options_json: str):
    from ..data.files import load_views_file

    return load_views_file(path, **json.loads(options_json))


def _user_file(spec: RunSpec):
    """The loaded file of a run on a user's file (cached per process by path, size, mtime and options)."""
    path = Path(spec.data)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    st = path.stat()
    return _cached_file(str(path.resolve()), st.st_size, st.st_mtime_ns, json.dumps(_canonical_options(spec.data_options), sort_keys=True))


def _dataset_of(spec: RunSpec):
    return _user_file(spec).dataset if spec.data is not None else _cached_dataset(spec.dataset)


@functools.lru_cache(maxsize=1)
def _git_sha() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if out.returncode == 0 and sha:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def environment_fingerprint() -> dict:
    import scipy
    import sklearn
    import torch

    from ..methods.nets import fused_kernels_state

    env = {
        "python": platform.python_version(), "platform": platform.platform(), "numpy": np.__version__,
        "scipy": scipy.__version__, "sklearn": sklearn.__version__, "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "torch_threads": torch.get_num_threads(), "blas_threads": current_threads()["blas"],
        # which numeric path the minibatch layers took (compiled kernels or cdist differ at float32 rounding)
        "fused_kernels": fused_kernels_state(),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _peak_cpu_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 1024.0**2


def execute_run(spec: RunSpec, store: ResultStore | None = None, quiet: bool = True, force: bool = False,
                threads: int | None = None) -> dict:
    """Run one configuration and (with a store) record it. Never raises for a failed fit.

    With a store, a run already ``done`` is skipped (returns the stored row) unless ``force``, and a run is
    claimed before it is computed: when another live process holds it, nothing is computed and the result has
    ``status="taken"`` and that ``owner``. A fit that raises or diverges is recorded as ``failed`` with its error
    and epoch. Usage problems (bad settings, a device not present, data missing or corrupt) raise
    :class:`DataError` before any row is written.
    ``threads`` sets this process's torch and BLAS threads first (:mod:`mmclust.repro.threads`); None keeps them.
    """
    from ..runtime import resolve_device

    spec.validate()
    ident = spec.identity()
    run_id, ident["config_id"] = _ids(ident)
    if store is not None and not force and store.status_of(run_id) == "done":
        row = store.get(run_id)
        row["skipped"] = True
        return row
    if spec.data is None:  # a user's file is read (and its problems named) by _user_file
        _validate.require_data(spec.dataset)
    device = resolve_device(_validate.check_device(spec.device))
    if threads is not None:  # before any torch work of this run
        limit_threads(threads)
    owner = new_owner()
    if store is not None and not store.claim(run_id, ident, owner, retake_done=force):
        row = store.get(run_id)
        if row["status"] == "done":  # finished by another process since the look above
            return {**row, "skipped": True}
        return {"run_id": run_id, "status": "taken", "owner": row["owner"], "metrics": None}
    with (Heartbeat(store.path, run_id, owner) if store is not None else contextlib.nullcontext()):
        result = _compute(spec, ident, run_id, device, quiet)
    if store is not None:
        owned = store.finish(run_id, status=result["status"], metrics=result["metrics"], history=_jsonable(result["history"]),
                             wall_time_s=result["wall_time_s"], peak_cpu_mb=result["peak_cpu_mb"],
                             peak_cuda_mb=result["peak_cuda_mb"], device=result["device"], environment=result["environment"],
                             git_sha=result["git_sha"], error=result["error"], failed_epoch=result["failed_epoch"], owner=owner)
        if not owned:  # presumed dead and taken over meanwhile: the successor's row stands
            result["status"], result["owner"] = "taken", (store.get(run_id) or {}).get("owner")
    return result


def _compute(spec: RunSpec, ident: dict, run_id: str, device, quiet: bool) -> dict:
    """Fit and score one claimed run; never raises for a failed fit."""
    import torch

    from ..methods import DivergenceError
    from ..methods.base import check_float32_scale

    result = {"run_id": run_id, **{k: ident[k] for k in ("method", "variant", "dataset", "protocol", "missing_rate", "split", "seed")},
              "device": str(device), "metrics": None, "history": None, "error": None, "failed_epoch": None}
    t0 = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    estimator = None
    try:
        ds = _dataset_of(spec)
        fixed = _registry.fixed_test_index(spec.dataset) if parse_split(spec.split) == "dataset" else None
        train, test = protocol_rows(ds, spec.protocol, spec.seed, spec.missing_rate, spec.split, fixed)
        params = spec.resolved_params()
        if "device" in params:
            params["device"] = str(device)
        if "verbose" in params:
            params["verbose"] = not quiet
        estimator = spec.method_class()(**params)
        check_float32_scale(train)  # every method: a clear refusal, not an overflowed partition or a NaN loss
        # the method sees features and k only: labels cannot reach fit, whatever the method does; k is the whole
        # data set's, even if a tiny class has no row among the training rows
        estimator.fit(train.replace(labels=None, class_names=ds.class_names))
        result["labels"] = estimator.labels_  # returned for the caller to save; the store keeps metrics only
        if train.labels is None:  # unlabelled data: clustered, not scored
            metrics = {}
        else:
            metrics = score(train.labels, estimator.labels_)
            if test is not None:
                metrics = {**score(test.labels, estimator.predict(test.without_labels())), "train": metrics}
        result.update(status="done", metrics=metrics)
    except DivergenceError as err:
        result.update(status="failed", error=f"diverged: {err}", failed_epoch=err.epoch)
    except Exception as err:  # noqa: BLE001 - a sweep records the failure and goes on
        result.update(status="failed", error=f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=4)}")
        result["failed_epoch"] = len(getattr(estimator, "history_", []) or []) or None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result["wall_time_s"] = time.perf_counter() - t0
    result["history"] = getattr(estimator, "history_", None)
    result["peak_cpu_mb"] = _peak_cpu_mb()
    result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    result["environment"] = environment_fingerprint()
    result["git_sha"] = _git_sha()
    return result


def _jsonable(history):
    if history is None:
        return None

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, (np.floating, np.integer)):
            return clean(v.item())
        return v

    return [{k: clean(v) for k, v in row.items()} for row in history]


def open_store_for(path: str | os.PathLike, must_exist: bool = False, readonly: bool = False) -> ResultStore:
    """The store at ``path``; ``readonly`` (readers: results, report) opens an existing one without writing."""
    path = Path(path)
    if (must_exist or readonly) and not path.is_file():
        raise FileNotFoundError(f"result store {path} does not exist; run `mmclust reproduce` first or pass --db")
    return ResultStore(path, readonly=readonly)


# -- grids --------------------------------------------------------------------------------------
def epoch_caps(method: str, max_epochs: int | None) -> dict:
    """Overrides capping every training phase of ``method`` at ``max_epochs`` (a quick look), as ``reproduce``."""
    if max_epochs is None:
        return {}
    if max_epochs < 0:
        raise DataError(f"max_epochs must be >= 0, got {max_epochs}")
    if method not in _methods():
        raise DataError(f"unknown method {method!r}; valid: {', '.join(sorted(_methods()))}")
    defaults = _methods()[method]().get_params()
    return {phase: min(int(max_epochs), int(defaults[phase])) for phase in _EPOCH_PARAMS if phase in defaults}


def build_grid(paper: str, table: str | None = None, datasets=None, runs: int = 5, device: str = "auto",
               max_epochs: int | None = None, findings: bool = False) -> tuple[list[RunSpec], list[dict]]:
    """The runs a paper's reference file asks for, and the cells that cannot run (with why).

    One configuration per distinct (method, variant, dataset, protocol, missing_rate) among the
    paper's testable cells; ``runs`` seeds each (0..runs-1). A cell runs on the paper's data when
    present, else on its declared stand-in (verdict ``features_differ``), else it is ``data_absent``.
    ``findings`` adds each cell's other readings (see :func:`mmclust.repro.references.run_plan`).
    """
    from .references import load_references, run_plan

    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise DataError(f"runs must be >= 1, got {runs}")
    _validate.check_count("--max-epochs", max_epochs)
    refs = load_references(paper)
    plan, skipped = run_plan(refs, table=table, datasets=datasets, findings=findings)
    specs = []
    for cfg in plan:
        # a quick look caps every training phase (pre-training included); stored as overrides, so
        # these runs never mix with runs at the paper's settings
        overrides = epoch_caps(cfg["method"], max_epochs)
        for seed in range(runs):
            specs.append(RunSpec(method=cfg["method"], variant=cfg["variant"], dataset=cfg["run_dataset"],
                                 protocol=cfg["protocol"], missing_rate=cfg["missing_rate"], seed=seed,
                                 overrides=overrides, device=device, split=cfg["split"]))
    # one (dataset, seed) after another, so work a run can share with the next (DEC / JECL pre-training
    # of a view) is still memoised when the next run needs it; the order changes no result, and
    # a sweep cut short has covered every configuration for its first seeds, not a few configurations fully
    specs.sort(key=lambda s: (s.dataset, s.seed, s.protocol, s.missing_rate if s.missing_rate is not None else -1.0, s.split or ""))
    return specs, skipped


def _sweep_settings() -> dict:
    """This process's ``MMCLUST_*`` settings (data folder, WordNet file), paths made absolute, for local workers."""
    env = {k: v for k, v in os.environ.items() if k.startswith("MMCLUST_")}
    env["MMCLUST_DATA"] = str(_registry.data_dir().resolve())
    if env.get("MMCLUST_WORDNET"):
        env["MMCLUST_WORDNET"] = str(Path(env["MMCLUST_WORDNET"]).expanduser().resolve())
    return env


def _use_settings(env: dict) -> None:
    """Take the sending sweep's ``MMCLUST_*`` settings in this worker. joblib keeps its worker processes for the
    next sweep, each with the environment (and working directory) it was started with: without this, a second
    sweep of one process after ``MMCLUST_DATA`` changed would read, and validate against, the first one's folder."""
    for key in [k for k in os.environ if k.startswith("MMCLUST_") and k not in env]:
        del os.environ[key]
    os.environ.update(env)


def _run_in_worker(spec_dict: dict, db_path: str, quiet: bool, threads: int | None = None,
                   settings: dict | None = None) -> dict:
    # module-level so joblib / Dask can ship it; each worker opens its own SQLite connection. ``settings``: the
    # local sweep's MMCLUST_* variables (Dask workers, on other machines, keep their own)
    if settings is not None:
        _use_settings(settings)
    store = ResultStore(db_path)
    try:
        res = execute_run(RunSpec(**spec_dict), store=store, quiet=quiet, threads=threads)
        return {"run_id": res["run_id"], "status": res["status"], "skipped": bool(res.get("skipped")), "owner": res.get("owner")}
    finally:
        store.close()


def reproduce(paper: str, table: str | None = None, datasets=None, runs: int = 5, device: str = "auto",
              engine: str = "local", scheduler: str | None = None, n_jobs: int | None = 1, store: ResultStore | None = None,
              quiet: bool = False, max_epochs: int | None = None, client=None, findings: bool = False,
              threads: int | None = None, announce=None) -> dict:
    """Run a paper's grid, skipping runs already stored, on the local or the Dask engine.

    Resumable: a sweep killed mid-way and restarted loses no finished run and repeats none,
    because every finished run is one committed row and is skipped on restart. Concurrent sweeps on one store
    share the work: each run is claimed before it is computed (see :meth:`ResultStore.claim`), and a run another
    live process holds is counted under ``taken``, not computed again. Every run is validated before the first
    one starts, so a bad setting stops the sweep before anything is written.
    Each run gets ``threads`` torch / BLAS threads, or with ``n_jobs`` > 1 local runs ``cores // n_jobs``
    (never more threads than cores); Dask workers keep their own setting unless ``threads`` is given.
    ``n_jobs=None`` takes the default layout (:func:`mmclust.repro.threads.run_layout`: one single-threaded run per
    core on the CPU, else 1); local runs at a time never exceed the runs left to compute. ``announce`` (e.g.
    ``print``) is told the layout in one line before the first run; ``summary["layout"]`` holds it.
    """
    from tqdm.auto import tqdm

    if engine not in ("local", "dask"):
        raise DataError(f"unknown engine {engine!r}; valid: local, dask")
    run_layout(n_jobs, threads, device, engine)  # a bad count is a usage error before the grid is built
    store = store or ResultStore("results.db")
    specs, skipped_cells = build_grid(paper, table=table, datasets=datasets, runs=runs, device=device, max_epochs=max_epochs,
                                      findings=findings)
    for s in specs:
        s.validate()
    todo = [s for s in specs if store.status_of(run_id_of(s)) != "done"]
    summary = {"planned": len(specs), "skipped": len(specs) - len(todo), "done": 0, "failed": 0, "taken": 0,
               "cells_not_run": skipped_cells}
    if not todo:
        return summary
    layout = run_layout(n_jobs, threads, device, engine, n_runs=len(todo))
    summary["layout"] = asdict(layout)
    if announce is not None:
        announce(layout.describe())
    n_jobs, run_threads = layout.jobs, layout.threads
    payload = [asdict(s) for s in todo]
    if engine == "local" and n_jobs == 1:
        outcomes = []
        for s in tqdm(todo, desc=f"{Path(paper).stem} runs", disable=quiet, unit="run"):
            res = execute_run(s, store=store, quiet=quiet, threads=run_threads)  # epoch bars nest under the run bar
            outcomes.append({"status": res["status"], "skipped": bool(res.get("skipped"))})
    elif engine == "local":
        from joblib import Parallel, delayed

        # joblib keeps its workers for the next sweep, with the working directory and environment they started
        # with: the store and the MMCLUST_* settings go to them as this sweep's absolute paths
        db, settings = str(Path(store.path).resolve()), _sweep_settings()
        outcomes = Parallel(n_jobs=n_jobs)(delayed(_run_in_worker)(p, db, True, run_threads, settings) for p in payload)
    else:
        outcomes = _run_on_dask(payload, str(store.path), scheduler=scheduler, client=client, quiet=quiet,
                                threads=run_threads)
    for o in outcomes:
        if o.get("skipped"):  # finished by another process after this sweep listed it
            summary["skipped"] += 1
        elif o["status"] == "taken":
            summary["taken"] += 1
        else:
            summary["done" if o["status"] == "done" else "failed"] += 1
    return summary


def _run_on_dask(payload: list[dict], db_path: str, scheduler: str | None, client=None, quiet: bool = True,
                 threads: int | None = None) -> list[dict]:
    try:
        from dask.distributed import Client, as_completed
    except ImportError as err:
        raise DataError("engine 'dask' needs the dask extra: pip install 'mmclust[dask]'") from err
    own = client is None
    if own:
        if not scheduler:
            raise DataError("engine 'dask' needs --scheduler ADDRESS of a running Dask scheduler")
        client = Client(scheduler)
    try:
        futures = [client.submit(_run_in_worker, p, db_path, True, threads, pure=False) for p in payload]
        return [f.result() for f in as_completed(futures)]
    finally:
        if own:
            client.close()
