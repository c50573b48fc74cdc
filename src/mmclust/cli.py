"""The ``mmclust`` command line: datasets | run | reproduce | report | results.

Exit codes: 0 success, 1 a run or check failed, 2 bad usage (unknown name, impossible setting, a value of the
wrong type or range, a device not present, data missing or corrupt for what was asked); a usage error writes
nothing (every check runs before a store is opened).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys

from .data import DataError

EXIT_USAGE = 2
EXIT_FAILED = 1


def _print_table(rows: list[list[str]], header: list[str], out=None) -> None:
    out = out or sys.stdout
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header).rstrip(), file=out)
    print(fmt.format(*["-" * w for w in widths]).rstrip(), file=out)
    for r in rows:
        print(fmt.format(*[str(c) for c in r]).rstrip(), file=out)


def cmd_datasets(args) -> int:
    from .data.registry import REGISTRY, data_dir, status

    rows = []
    for name, spec in REGISTRY.items():
        if args.all or spec.available_here or status(name) != "missing":
            dims = "+".join(f"{v}:{d}" for v, d in spec.dims.items())
            rows.append([name, status(name), spec.file, f"{spec.n_samples}x({dims})", spec.n_classes, spec.source])
    print(f"data folder: {data_dir()}  (set MMCLUST_DATA to change)")
    _print_table(rows, ["name", "status", "file", "shape", "k", "source"])
    if not args.all:
        print("(the papers' own feature files that must be user-supplied are listed with --all)")
    return 0


def _parse_overrides(pairs: list[str], method: str | None = None) -> dict:
    """``--set`` pairs as a dict; with a known ``method`` typed by its parameters' defaults (repro.validate)."""
    from .methods import METHODS

    if method in METHODS:
        from .repro.validate import parse_overrides

        return parse_overrides(METHODS[method], pairs)
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise DataError(f"override {p!r} must look like name=value")
        key, value = p.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _file_options(args) -> dict:
    """How ``--data FILE`` is read: ``--views``, ``--views-key``, ``--labels-key``, ``--samples-in``."""
    views = None if args.views is None else [v.strip() for v in args.views.split(",") if v.strip()]
    return {k: v for k, v in dict(views=views, views_key=args.views_key, labels_key=args.labels_key,
                                   samples_in=args.samples_in).items() if v is not None}


def _save_labels(path: str, labels, loaded) -> None:
    """Cluster of every row (0..k-1) as ``.npy`` or ``.csv`` (row, cluster and, with labels, the file's own label id)."""
    import numpy as np

    if path.endswith(".npy"):
        np.save(path, np.asarray(labels, dtype=np.int64), allow_pickle=False)
        return
    if not path.endswith(".csv"):
        raise DataError(f"--save-labels {path}: expected a .npy or .csv file name")
    ds = loaded.dataset
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("row,cluster" + (",label\n" if ds.has_labels else "\n"))
        for i, c in enumerate(labels):
            fh.write(f"{i},{int(c)}" + (f",{loaded.label_ids[ds.labels[i]]}\n" if ds.has_labels else "\n"))


_FILE_ONLY = ("views", "views_key", "labels_key", "samples_in", "n_clusters", "save_labels")


def _run_not_done(result: dict, db) -> int:
    """Say why a single run has no result (another process holds it, or it failed) and return the exit code."""
    if result["status"] == "taken":
        print(f"run {result['run_id'][:10]} is being computed by {result['owner']} (claimed in {db}); not started",
              file=sys.stderr)
    else:
        print(f"run failed: {result.get('error')}", file=sys.stderr)
    return EXIT_FAILED


def _cmd_run_file(args) -> int:
    """``mmclust run METHOD --data FILE``: one run on a user's file (resumable with --db, like registry runs)."""
    from pathlib import Path

    from .repro.comparison import file_run_specs
    from .repro.runner import _user_file, execute_run, open_store_for

    if args.data is None and args.dataset is not None:
        used = ", ".join("--" + a.replace("_", "-") for a in _FILE_ONLY if getattr(args, a) is not None)
        raise DataError(f"{used} apply to --data FILE only, not to a registry data set (--dataset)")
    if args.data is None:
        raise DataError("give a registry data set (--dataset NAME) or a file (--data FILE)")
    if args.dataset is not None:
        raise DataError("give either --dataset NAME or --data FILE, not both")
    if args.save_labels and args.split:
        raise DataError("--save-labels writes the cluster of every row; it cannot be combined with --split")
    if args.save_labels and not args.save_labels.endswith((".npy", ".csv")):
        raise DataError(f"--save-labels {args.save_labels}: expected a .npy or .csv file name")
    (spec,), notes = file_run_specs(
        args.data, [args.method], [args.seed], options=_file_options(args), n_clusters=args.n_clusters,
        max_epochs=args.max_epochs, device=args.device, overrides=_parse_overrides(args.set, args.method), protocol=args.protocol,
        missing_rate=args.missing_rate, split=args.split)
    from dataclasses import replace

    spec = replace(spec, variant=args.variant)
    spec.validate()
    loaded = _user_file(spec)
    if not args.quiet:
        print(f"{Path(args.data).name}: {loaded.dataset!r}")
    for note in notes:
        print(f"  note: {note}")
    from .repro.validate import check_device

    check_device(spec.device)  # a device not present is a usage error before the store is created
    from .repro.threads import threads_per_run

    threads = threads_per_run(1, args.threads)  # --threads 0 was accepted and --threads ignored on a file
    store = open_store_for(args.db) if args.db else None
    result = execute_run(spec, store=store, quiet=args.quiet, threads=threads)
    if result.get("skipped"):
        print(f"(already in {args.db}; not re-run)")
        if args.save_labels:  # the store keeps metrics, not labels: recompute (same seed, same labels) without storing
            result = execute_run(spec, store=None, quiet=args.quiet)
    if result["status"] != "done":
        return _run_not_done(result, args.db)
    print(f"{spec.method} on {spec.dataset} ({spec.protocol}{'' if spec.missing_rate is None else f' {spec.missing_rate:.0%}'}, "
          f"seed {spec.seed}, views {', '.join(loaded.dataset.views)}):")
    m = dict(result["metrics"] or {})
    train = m.pop("train", None)
    if train is not None:
        print("  train: " + "  ".join(f"{k}={v:.4f}" for k, v in train.items()))
    scores = "  ".join(f"{k}={v:.4f}" for k, v in m.items()) if m else "no labels in the file: not scored"
    print(("  test:  " if train is not None else "  ") + scores + f"  wall={result['wall_time_s']:.1f}s  device={result['device']}")
    if args.save_labels:
        _save_labels(args.save_labels, result["labels"], loaded)
        print(f"labels of {len(result['labels'])} rows -> {args.save_labels}")
    return 0


def cmd_compare(args) -> int:
    """``mmclust compare --data FILE --methods a,b``: every method x seed into the store, then the table and a report."""
    from pathlib import Path

    from .repro.comparison import file_run_specs, render_text, run_comparison, summarise, write_comparison_report
    from .repro.runner import _user_file, open_store_for

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise DataError("--methods needs at least one method name")
    if args.runs < 1:
        raise DataError(f"runs must be >= 1, got {args.runs}")
    specs, notes = file_run_specs(args.data, methods, range(args.runs), options=_file_options(args),
                                  n_clusters=args.n_clusters, max_epochs=args.max_epochs, device=args.device)
    for note in notes:
        print(f"note: {note}")
    from .repro.validate import check_device

    check_device(args.device)  # a device not present is a usage error before the store is created
    store = open_store_for(args.db)

    def progress(spec, res):
        if not args.quiet:
            state = "stored" if res.get("skipped") else res["status"]
            print(f"  {spec.method} seed {spec.seed}: {state} ({res.get('wall_time_s') or 0:.1f}s)", flush=True)

    rows = run_comparison(specs, store, quiet=True, progress=progress)
    summary = summarise(specs, rows)
    print(render_text(summary))
    stem = Path(args.data).stem
    context = [f"data: {Path(args.data).name} (sha256 {specs[0].identity()['data_sha256'][:12]}), "
               f"{args.runs} seeds per method, store {Path(args.db).name}"] + notes
    views_used: dict = {}
    for spec in specs:
        dims = _user_file(spec).dataset.dims
        views_used.setdefault(", ".join(f"{v} ({d}-d)" for v, d in dims.items()), []).append(spec.method)
    context += [f"views of {', '.join(dict.fromkeys(ms))}: {v}" for v, ms in views_used.items()]
    if args.max_epochs is not None:
        context.append(f"every training phase capped at {args.max_epochs} epochs (--max-epochs)")
    paths = write_comparison_report(summary, args.out, stem, context, plots=not args.no_plots)
    print("report: " + ", ".join(str(p) for p in paths))
    return 0 if all(m["failed"] == 0 for m in summary["methods"]) else 1


def cmd_run(args) -> int:
    from .repro.runner import RunSpec, execute_run, open_store_for
    from .repro.threads import threads_per_run
    from .repro.validate import check_device, require_data

    if args.dataset is None or args.data is not None or any(getattr(args, a) is not None for a in _FILE_ONLY):
        return _cmd_run_file(args)
    spec = RunSpec(
        method=args.method, variant=args.variant, dataset=args.dataset, protocol=args.protocol,
        missing_rate=args.missing_rate, seed=args.seed, overrides=_parse_overrides(args.set, args.method),
        device=args.device, split=args.split,
    )
    if args.max_epochs is not None:  # as `reproduce --max-epochs`: every training phase capped, stored as overrides
        from dataclasses import replace

        from .repro.runner import epoch_caps

        spec = replace(spec, overrides={**epoch_caps(args.method, args.max_epochs), **spec.overrides})
    spec.validate()
    require_data(spec.dataset)
    check_device(spec.device)
    threads = threads_per_run(1, args.threads)
    store = open_store_for(args.db) if args.db else None
    # with a store, a run already done is reported from the store, never recomputed over its row
    result = execute_run(spec, store=store, quiet=args.quiet, threads=threads)
    if result.get("skipped"):
        print(f"(already in {args.db}; not re-run)")
    if result["status"] != "done":
        return _run_not_done(result, args.db)
    m = result["metrics"]
    print(f"{spec.method} on {spec.dataset} ({spec.protocol}{'' if spec.missing_rate is None else f' {spec.missing_rate:.0%}'}, seed {spec.seed}):")
    train = m.pop("train", None)
    if train is not None:
        print("  train: " + "  ".join(f"{k}={v:.4f}" for k, v in train.items()))
    print(("  test:  " if train is not None else "  ") + "  ".join(f"{k}={v:.4f}" for k, v in m.items())
          + f"  wall={result['wall_time_s']:.1f}s  device={result['device']}")
    return 0


def _not_run_lines(not_run: list[dict], also_data=()) -> list[str]:
    """One line per data set (absent vs corrupt, with the file and the fix) and per unimplemented method;
    ``also_data``: further data sets that would make something runnable (a paper's claims' stand-ins)."""
    from .repro.validate import data_problem

    lines = {}
    for n in not_run:
        if n["why"] in ("data_absent", "data_corrupt"):
            lines.setdefault(n["data"], f"  {data_problem(n['data']) or n['detail']}")
        else:
            lines.setdefault((n["method"], n["variant"]), f"  {n['method']}/{n['variant']}: {n['detail']}")
    for d in also_data:
        problem = data_problem(d)
        if problem:
            lines.setdefault(d, f"  {problem} (data its claims run on)")
    return list(lines.values())


def _write_report(paper, store, out, plots) -> list:
    import warnings

    from .repro.report import ReportKept, write_report

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReportKept)
        paths = write_report(paper, store, out, plots=plots)
    for w in caught:
        if issubclass(w.category, ReportKept):
            print(f"mmclust: note: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return paths


def cmd_reproduce(args) -> int:
    from .repro.runner import build_grid, open_store_for, reproduce
    from .repro.validate import check_count, check_device

    # validate paper, table, runs, jobs, epochs, device and every run before anything is written (exit 2)
    check_count("--jobs", args.jobs)
    check_device(args.device, available=args.engine == "local")  # Dask workers check their own devices
    from .data.registry import get_spec

    for d in args.dataset or []:
        get_spec(d)
    from .repro.threads import run_layout

    run_layout(args.jobs, args.threads, args.device, args.engine)  # a bad --jobs / --threads: usage error, no store
    specs, not_run = build_grid(args.paper, table=args.table, datasets=args.dataset, runs=args.runs, device=args.device,
                                max_epochs=args.max_epochs, findings=args.with_findings)
    for s in specs:
        s.validate()
    if not specs:
        from .repro.references import load_references

        claims_data = [] if args.table else [d for cl in load_references(args.paper).claims
                                             for d in (*cl.datasets, *cl.stand_ins) if not args.dataset or d in args.dataset]
        print(f"mmclust: error: nothing of {args.paper} can run here"
              + (f" on {', '.join(args.dataset)}" if args.dataset else "") + ":", file=sys.stderr)
        print("\n".join(_not_run_lines(not_run, dict.fromkeys(claims_data)) or ["  (no cell matches)"]), file=sys.stderr)
        return EXIT_USAGE
    store = open_store_for(args.db)
    summary = reproduce(
        args.paper, table=args.table, datasets=args.dataset, runs=args.runs, device=args.device,
        engine=args.engine, scheduler=args.scheduler, n_jobs=args.jobs, store=store, quiet=args.quiet,
        max_epochs=args.max_epochs, findings=args.with_findings, threads=args.threads,
        announce=lambda line: print(f"layout: {line}", flush=True),
    )
    print(f"{args.paper}: {summary['done']} runs done, {summary['skipped']} already stored, {summary['failed']} failed"
          + (f", {summary['taken']} being computed by another process" if summary.get("taken") else "")
          + f" -> {args.db}")
    lines = _not_run_lines(summary["cells_not_run"])
    if lines:
        print("not run here (the report lists these cells):\n" + "\n".join(lines))
    if not args.no_report:
        paths = _write_report(args.paper, store, args.out, plots=not args.no_plots)
        print("report: " + ", ".join(str(p) for p in paths))
    return EXIT_FAILED if summary["failed"] else 0


def cmd_report(args) -> int:
    from .repro.references import load_references
    from .repro.runner import open_store_for

    load_references(args.paper)
    store = open_store_for(args.db, readonly=True)
    paths = _write_report(args.paper, store, args.out, plots=not args.no_plots)
    for p in paths:
        print(p)
    return 0


def cmd_results(args) -> int:
    from .repro.runner import open_store_for

    store = open_store_for(args.db, readonly=True)
    rows = store.query(method=args.method, dataset=args.dataset, status=args.status)
    table = [[r["run_id"][:10], r["method"], r["variant"], r["dataset"], r["protocol"],
              "" if r["missing_rate"] is None else f"{r['missing_rate']:.2f}", r.get("split") or "all rows",
              (r.get("code_version") or "?")[:8], r["seed"], r["status"],
              "" if r["metrics"] is None else f"{r['metrics'].get('acc', float('nan')):.4f}",
              "" if r["metrics"] is None else f"{r['metrics'].get('nmi', float('nan')):.4f}",
              f"{r['wall_time_s'] or 0:.1f}"] for r in rows]
    _print_table(table, ["run", "method", "variant", "dataset", "protocol", "miss", "split", "code", "seed", "status", "acc", "nmi", "wall_s"])
    return 0


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog is computed when help is shown (listing methods imports torch: not on
    every start)."""

    lazy_epilog = None

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)  # one list per epilog line
        super().__init__(*args, **kwargs)

    def format_help(self):
        if self.lazy_epilog is not None:
            self.epilog = self.lazy_epilog()
        return super().format_help()


def _valid_names(*which: str):
    def epilog() -> str:
        from .data.registry import REGISTRY
        from .repro.references import PAPERS
        from .repro.validate import VALID_DEVICES

        lists = {"papers": lambda: PAPERS, "datasets": lambda: sorted(REGISTRY), "devices": lambda: VALID_DEVICES}
        if "methods" in which:
            from .methods import METHODS

            lists["methods"] = lambda: sorted(METHODS)
        return "\n".join(f"valid {w}: {', '.join(lists[w]())}" for w in which)

    return epilog


def _add_file_arguments(p, required: bool) -> None:
    p.add_argument("--data", required=required, default=None, metavar="FILE",
                   help="your own multi-view file: .npz, or .mat (v5 / v7.3) with a cell of views (X, fea, data, ...)")
    p.add_argument("--views", default=None, help="views to use, by name or position: a,b or 0,2 (two-view methods: "
                                                   "default the first two)")
    p.add_argument("--views-key", default=None, help="variable holding the views (default: X, fea, data, ...)")
    p.add_argument("--labels-key", default=None, help="variable holding the labels (default: Y, gt, truth, labels, ...)")
    p.add_argument("--samples-in", default=None, choices=["auto", "rows", "columns"],
                   help="where the samples are in each view (default: told from the labels / shapes)")
    p.add_argument("--n-clusters", type=int, default=None, help="k (required when the file has no labels)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mmclust", description="Reproduce multimodal deep-clustering papers and check them against the published tables.")
    p.add_argument("--version", action="version", version=f"mmclust {__import__('mmclust').__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("datasets", help="list the real data sets: present / missing / corrupt")
    d.add_argument("--all", action="store_true", help="also list the papers' feature files that must be user-supplied")
    d.set_defaults(func=cmd_datasets)

    common_db = dict(default="results.db", help="SQLite result store (default: results.db)")

    r = sub.add_parser("run", help="one run of a method on a data set, printing ACC/NMI/ARI/F/purity")
    r.add_argument("method")
    r.add_argument("--dataset", default=None, help="a registry data set (see `mmclust datasets`)")
    _add_file_arguments(r, required=False)
    r.add_argument("--save-labels", default=None, metavar="OUT.npy|OUT.csv", help="write every row's cluster (with --data)")
    r.add_argument("--max-epochs", type=int, default=None, help="cap every training phase at N epochs (with --data)")
    r.add_argument("--variant", default="full")
    r.add_argument("--protocol", default="paired", help="paired | incomplete | mixed_modal")
    r.add_argument("--missing-rate", type=float, default=None)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--split", default=None, help="score held-out rows: test=N, test_fraction=F or dataset (its own split)")
    r.add_argument("--device", default="auto")
    r.add_argument("--set", nargs="*", metavar="NAME=VALUE", help="hyperparameter overrides")
    r.add_argument("--db", default=None, help="also store the result in this SQLite file")
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--threads", type=int, default=None, help="torch and BLAS threads of the run (default: the process's own)")
    r.set_defaults(func=cmd_run)
    r.lazy_epilog = _valid_names("methods", "datasets", "devices")

    cp = sub.add_parser("compare", help="methods side by side on your own file: table (mean ± std), store, report")
    _add_file_arguments(cp, required=True)
    cp.add_argument("--methods", default="kmeans,dec,jecl,cigit_c", help="comma-separated (default: kmeans,dec,jecl,cigit_c)")
    cp.add_argument("--runs", type=int, default=5, help="seeds per method (0..runs-1)")
    cp.add_argument("--max-epochs", type=int, default=None, help="cap every training phase at N epochs (a quick look)")
    cp.add_argument("--device", default="auto")
    cp.add_argument("--db", **common_db)
    cp.add_argument("--out", default="reports")
    cp.add_argument("--no-plots", action="store_true")
    cp.add_argument("--quiet", action="store_true")
    cp.set_defaults(func=cmd_compare)

    rp = sub.add_parser("reproduce", help="run a paper's published grid (resumable) and write the report")
    rp.add_argument("paper")
    rp.add_argument("--table", default=None)
    rp.add_argument("--dataset", action="append", default=None, help="restrict to these data sets (repeatable)")
    rp.add_argument("--runs", type=int, default=5)
    rp.add_argument("--device", default="auto")
    rp.add_argument("--engine", default="local", choices=["local", "dask"])
    rp.add_argument("--scheduler", default=None, help="Dask scheduler address (with --engine dask)")
    rp.add_argument("--jobs", type=int, default=None,
                    help="parallel runs with the local engine (joblib; default: one per core on the CPU, 1 on a GPU "
                         "or with Dask; never more than the runs to compute)")
    rp.add_argument("--threads", type=int, default=None,
                    help="torch and BLAS threads per run (default: cores // jobs with more than one run at a time, "
                         "so runs never oversubscribe)")
    rp.add_argument("--max-epochs", type=int, default=None, help="cap every training phase at N epochs (a quick look; stored as overrides, reported apart)")
    rp.add_argument("--with-findings", action="store_true",
                    help="also run each cell's other readings (e.g. BDGP's first 1000 columns, all rows without the split)")
    rp.add_argument("--db", **common_db)
    rp.add_argument("--out", default="reports")
    rp.add_argument("--no-report", action="store_true")
    rp.add_argument("--no-plots", action="store_true")
    rp.add_argument("--quiet", action="store_true")
    rp.set_defaults(func=cmd_reproduce)
    rp.lazy_epilog = _valid_names("papers", "datasets", "devices")

    rep = sub.add_parser("report", help="write the Markdown/HTML report (PNG plots with the plot extra)")
    rep.add_argument("paper")
    rep.add_argument("--db", **common_db)
    rep.add_argument("--out", default="reports")
    rep.add_argument("--no-plots", action="store_true")
    rep.set_defaults(func=cmd_report)
    rep.lazy_epilog = _valid_names("papers")

    res = sub.add_parser("results", help="list stored runs")
    res.add_argument("--db", **common_db)
    res.add_argument("--method", default=None)
    res.add_argument("--dataset", default=None)
    res.add_argument("--status", default=None, choices=["done", "failed", "running"])
    res.set_defaults(func=cmd_results)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DataError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"mmclust: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as err:
        print(f"mmclust: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.DatabaseError as err:  # --db names something that is not a result store
        print(f"mmclust: error: result store {getattr(args, 'db', '?')}: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
