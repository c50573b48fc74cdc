"""The ``mmclust`` command line: datasets | run | reproduce | report | results.

Exit codes: 0 success, 1 a run or check failed, 2 bad usage (unknown name, impossible setting);
a usage error writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys

from .data import DataError

EXIT_USAGE = 2


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


def _parse_overrides(pairs: list[str]) -> dict:
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


def cmd_run(args) -> int:
    from .repro.runner import RunSpec, execute_run, open_store_for
    from .repro.threads import threads_per_run

    spec = RunSpec(
        method=args.method, variant=args.variant, dataset=args.dataset, protocol=args.protocol,
        missing_rate=args.missing_rate, seed=args.seed, overrides=_parse_overrides(args.set),
        device=args.device, split=args.split,
    )
    spec.validate()
    threads = threads_per_run(1, args.threads)
    store = open_store_for(args.db) if args.db else None
    # with a store, a run already done is reported from the store, never recomputed over its row
    result = execute_run(spec, store=store, quiet=args.quiet, threads=threads)
    if result.get("skipped"):
        print(f"(already in {args.db}; not re-run)")
    if result["status"] != "done":
        print(f"run failed: {result.get('error')}", file=sys.stderr)
        return 1
    m = result["metrics"]
    print(f"{spec.method} on {spec.dataset} ({spec.protocol}{'' if spec.missing_rate is None else f' {spec.missing_rate:.0%}'}, seed {spec.seed}):")
    train = m.pop("train", None)
    if train is not None:
        print("  train: " + "  ".join(f"{k}={v:.4f}" for k, v in train.items()))
    print(("  test:  " if train is not None else "  ") + "  ".join(f"{k}={v:.4f}" for k, v in m.items())
          + f"  wall={result['wall_time_s']:.1f}s  device={result['device']}")
    return 0


def cmd_reproduce(args) -> int:
    from .repro.runner import build_grid, open_store_for, reproduce

    # validate paper, table, runs before anything is written (unknown names exit 2)
    build_grid(args.paper, table=args.table, datasets=args.dataset, runs=args.runs, device=args.device)
    from .data.registry import get_spec

    for d in args.dataset or []:
        get_spec(d)
    from .repro.threads import threads_per_run

    threads_per_run(args.jobs, args.threads)  # a bad --jobs / --threads is a usage error before the store opens
    store = open_store_for(args.db)
    summary = reproduce(
        args.paper, table=args.table, datasets=args.dataset, runs=args.runs, device=args.device,
        engine=args.engine, scheduler=args.scheduler, n_jobs=args.jobs, store=store, quiet=args.quiet,
        max_epochs=args.max_epochs, findings=args.with_findings, threads=args.threads,
    )
    print(f"{args.paper}: {summary['done']} runs done, {summary['skipped']} already stored, {summary['failed']} failed"
          f" -> {args.db}")
    if not args.no_report:
        from .repro.report import write_report

        paths = write_report(args.paper, store, args.out, plots=not args.no_plots)
        print("report: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_report(args) -> int:
    from .repro.references import load_references
    from .repro.report import write_report
    from .repro.runner import open_store_for

    load_references(args.paper)
    store = open_store_for(args.db, must_exist=True)
    paths = write_report(args.paper, store, args.out, plots=not args.no_plots)
    for p in paths:
        print(p)
    return 0


def cmd_results(args) -> int:
    from .repro.runner import open_store_for

    store = open_store_for(args.db, must_exist=True)
    rows = store.query(method=args.method, dataset=args.dataset, status=args.status)
    table = [[r["run_id"][:10], r["method"], r["variant"], r["dataset"], r["protocol"],
              "" if r["missing_rate"] is None else f"{r['missing_rate']:.2f}", r.get("split") or "all rows",
              (r.get("code_version") or "?")[:8], r["seed"], r["status"],
              "" if r["metrics"] is None else f"{r['metrics'].get('acc', float('nan')):.4f}",
              "" if r["metrics"] is None else f"{r['metrics'].get('nmi', float('nan')):.4f}",
              f"{r['wall_time_s'] or 0:.1f}"] for r in rows]
    _print_table(table, ["run", "method", "variant", "dataset", "protocol", "miss", "split", "code", "seed", "status", "acc", "nmi", "wall_s"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmclust", description="Reproduce multimodal deep-clustering papers and check them against the published tables.")
    p.add_argument("--version", action="version", version=f"mmclust {__import__('mmclust').__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("datasets", help="list the real data sets: present / missing / corrupt")
    d.add_argument("--all", action="store_true", help="also list the papers' feature files that must be user-supplied")
    d.set_defaults(func=cmd_datasets)

    common_db = dict(default="results.db", help="SQLite result store (default: results.db)")

    r = sub.add_parser("run", help="one run of a method on a data set, printing ACC/NMI/ARI/F/purity")
    r.add_argument("method")
    r.add_argument("--dataset", required=True)
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

    rp = sub.add_parser("reproduce", help="run a paper's published grid (resumable) and write the report")
    rp.add_argument("paper")
    rp.add_argument("--table", default=None)
    rp.add_argument("--dataset", action="append", default=None, help="restrict to these data sets (repeatable)")
    rp.add_argument("--runs", type=int, default=5)
    rp.add_argument("--device", default="auto")
    rp.add_argument("--engine", default="local", choices=["local", "dask"])
    rp.add_argument("--scheduler", default=None, help="Dask scheduler address (with --engine dask)")
    rp.add_argument("--jobs", type=int, default=1, help="parallel CPU runs with the local engine (joblib)")
    rp.add_argument("--threads", type=int, default=None,
                    help="torch and BLAS threads per run (default: cores // jobs with --jobs > 1, so runs never oversubscribe)")
    rp.add_argument("--max-epochs", type=int, default=None, help="cap every training phase at N epochs (a quick look; stored as overrides, reported apart)")
    rp.add_argument("--with-findings", action="store_true",
                    help="also run each cell's other readings (e.g. BDGP's first 1000 columns, all rows without the split)")
    rp.add_argument("--db", **common_db)
    rp.add_argument("--out", default="reports")
    rp.add_argument("--no-report", action="store_true")
    rp.add_argument("--no-plots", action="store_true")
    rp.add_argument("--quiet", action="store_true")
    rp.set_defaults(func=cmd_reproduce)

    rep = sub.add_parser("report", help="write the Markdown/HTML report (PNG plots with the plot extra)")
    rep.add_argument("paper")
    rep.add_argument("--db", **common_db)
    rep.add_argument("--out", default="reports")
    rep.add_argument("--no-plots", action="store_true")
    rep.set_defaults(func=cmd_report)

    res = sub.add_parser("results", help="list stored runs")
    res.add_argument("--db", **common_db)
    res.add_argument("--method", default=None)
    res.add_argument("--dataset", default=None)
    res.add_argument("--status", default=None, choices=[None, "done", "failed", "running"])
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


if __name__ == "__main__":
    sys.exit(main())
