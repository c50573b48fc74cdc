"""Methods side by side on a user's own file: ``mmclust compare --data FILE --methods kmeans,dec,jecl,cigit_c``.

Every (method, seed) is one ordinary run (:class:`~mmclust.repro.runner.RunSpec` with ``data``): same identity rules
(the file's sha256, how it is read, every resolved parameter, the code), same store, so a killed comparison
resumes and repeats nothing. The summary is every metric as mean ± std over seeds, the seed-by-seed paired
differences against the best method (highest mean ACC), and the wall time per run; written as Markdown, HTML and
a figure, as the papers' reports are.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from ..data import DataError
from ..data import dataset as _dataset
from ..metrics import METRICS
from .runner import RunSpec, _methods, _user_file, epoch_caps, execute_run
from .store import ResultStore

__all__ = ["file_run_specs", "run_comparison", "summarise", "write_comparison_report"]


def file_run_specs(data, methods, seeds, *, options: dict | None = None, n_clusters: int | None = None,
                   max_epochs: int | None = None, device: str = "auto", overrides: dict | None = None,
                   protocol: str = "paired", missing_rate: float | None = None, split: str | None = None,
                   name: str | None = None) -> tuple[list[RunSpec], list[str]]:
    """The runs of ``methods`` x ``seeds`` on the file ``data``, and notes on the defaults chosen for it.

    Defaults that fit the data (each said in the notes): a method that takes two views gets the file's first two
    unless ``options["views"]`` names them; k-means on sparse views normalises rows to unit length (``l2``: tf-idf
    data wants it) unless ``normalize`` is overridden. Unlabelled data needs ``n_clusters``. The runs' data set name
    is ``file:<stem>``, so the store never mixes them with a registry data set of the same name (the papers' reports
    select runs by name).
    """
    options = dict(options or {})
    overrides = dict(overrides or {})
    loaded = _user_file(RunSpec(method="kmeans", dataset="file", data=str(data), data_options=options))
    ds = loaded.dataset
    notes = list(loaded.notes)
    if n_clusters is None and not ds.has_labels:
        raise DataError(f"{Path(data).name}: no labels in the file, so --n-clusters is needed")
    if n_clusters is not None:
        overrides["n_clusters"] = int(n_clusters)
    specs = []
    classes = _methods()
    for method in methods:
        if method not in classes:
            raise DataError(f"unknown method {method!r}; valid: {', '.join(sorted(classes))}")
        cls = classes[method]
        opts = dict(options)
        n_views = getattr(cls, "N_VIEWS", None)
        if n_views is not None and opts.get("views") is None:
            if len(ds.views) < n_views:
                raise DataError(f"{method} takes {n_views} views; {Path(data).name} has {len(ds.views)}")
            opts["views"] = list(ds.views)[:n_views]
            if len(ds.views) > n_views:
                notes.append(f"{method} takes {n_views} views: using {', '.join(opts['views'])} of "
                             f"{', '.join(ds.views)} (choose with --views)")
        elif n_views is not None and len(opts["views"]) != n_views:
            raise DataError(f"{method} takes exactly {n_views} views; --views names {len(opts['views'])}")
        method_overrides = {**epoch_caps(method, max_epochs), **overrides}
        if method == "kmeans" and "normalize" not in method_overrides and "standardize" not in method_overrides:
            chosen = _user_file(RunSpec(method=method, dataset="file", data=str(data), data_options=opts)).dataset
            if chosen.sparse_views:
                method_overrides["normalize"] = "l2"
                notes.append("kmeans: sparse views, so rows are L2-normalised per view (normalize=l2; "
                             "--set normalize=standardize or normalize=null to change)")
        _scale_update_interval(method, cls, method_overrides, _train_rows(ds, split), notes)
        for seed in seeds:
            spec = RunSpec(method=method, dataset=name or f"file:{ds.name}", protocol=protocol, missing_rate=missing_rate,
                           seed=int(seed), overrides=method_overrides, device=device, split=split, data=str(data),
                           data_options=opts)
            specs.append(spec)
    for spec in specs[:: max(1, len(seeds))]:
        spec.validate()
        dense = _user_file(spec).dataset
        if dense.sparse_views and not getattr(spec.method_class(), "accepts_sparse", False):
            if dense.dense_bytes() > _dataset.MAX_DENSE_BYTES:  # read now: the limit densified() applies
                dense.densified()  # raises the DataError that states the memory needed, before anything runs
            notes.append(f"{spec.method}: sparse view(s) {', '.join(dense.sparse_views)} densified, "
                         f"about {dense.dense_bytes() / 2**20:.0f} MiB")
    return specs, notes


def _train_rows(ds, split) -> int:
    from ..data import parse_split
    from ..data.protocols import count_test_rows, split_test_size

    size = split_test_size(parse_split(split))
    return ds.n_samples - (count_test_rows(ds.n_samples, size, ds.name) if size is not None else 0)


def _scale_update_interval(method: str, cls, overrides: dict, n_train: int, notes: list) -> None:
    """DEC/JECL refresh their target every ``update_interval`` minibatches: DEC's 140, about half an epoch on its
    MNIST (70,000 rows in batches of 256). 140 batches of 256 are 35,840 rows, so on a smaller file the target
    would be refreshed less than once an epoch (never again within ``--max-epochs 5`` on 1,200 rows). On a
    user's file the interval is therefore at most one epoch, ceil(n_train / batch_size) minibatches; the
    papers' data sets keep their settings (this applies to file runs only); ``--set update_interval=N`` wins."""
    defaults = cls().get_params()
    if "update_interval" not in defaults or "update_interval" in overrides:
        return
    per_epoch = max(1, math.ceil(n_train / int(overrides.get("batch_size", defaults["batch_size"]))))
    if per_epoch < int(defaults["update_interval"]):
        overrides["update_interval"] = per_epoch
        notes.append(f"{method}: target refreshed every {per_epoch} minibatches (once an epoch of {n_train} rows; "
                     f"the paper's {defaults['update_interval']} would be {defaults['update_interval'] / per_epoch:.0f} "
                     f"epochs here; --set update_interval=N to change)")


def run_comparison(specs: list[RunSpec], store: ResultStore, quiet: bool = True, progress=None) -> list[dict]:
    """Run every spec not already done in ``store`` (resumable); returns each run's stored row, in spec order."""
    rows = []
    for spec in specs:
        res = execute_run(spec, store=store, quiet=quiet)
        if progress is not None:
            progress(spec, res)
        rows.append(store.get(res["run_id"]) or res)
    return rows


def _mean_std(values) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)


def summarise(specs: list[RunSpec], rows: list[dict]) -> dict:
    """Per method: n runs done / failed, every metric's mean ± std, wall time per run; the best method by mean ACC
    and, against it, the seed-by-seed differences of every other method (mean ± std over the seeds both finished)."""
    by_method: dict[str, dict] = {}
    for spec, row in zip(specs, rows):
        m = by_method.setdefault(spec.method, {"method": spec.method, "runs": {}, "failed": 0, "wall": []})
        if row.get("status") == "done":
            m["runs"][spec.seed] = row.get("metrics") or {}
            m["wall"].append(row.get("wall_time_s"))
        else:
            m["failed"] += 1
    metrics = [k for k in METRICS if any(k in r for m in by_method.values() for r in m["runs"].values())]
    for m in by_method.values():
        m["n"] = len(m["runs"])
        m["stats"] = {k: _mean_std([r.get(k) for r in m["runs"].values()]) for k in metrics}
        m["wall_s"] = _mean_std(m["wall"])
    ranked = [m for m in by_method.values() if m["stats"].get("acc", (None,))[0] is not None]
    best = max(ranked, key=lambda m: m["stats"]["acc"][0])["method"] if ranked else None
    paired = {}
    if best is not None:
        for name, m in by_method.items():
            if name == best:
                continue
            seeds = sorted(set(m["runs"]) & set(by_method[best]["runs"]))
            paired[name] = {"n": len(seeds), **{k: _mean_std([by_method[best]["runs"][s][k] - m["runs"][s][k] for s in seeds])
                                                 for k in metrics}}
    return {"methods": list(by_method.values()), "metrics": metrics, "best": best, "paired": paired}


def _pm(stat, scale=100.0, digits=1) -> str:
    mean, sd = stat
    return "—" if mean is None else f"{scale * mean:.{digits}f} ± {scale * sd:.{digits}f}"


def table_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    header = ["method", "runs"] + [k.upper() if k != "f_score" else "F" for k in summary["metrics"]] + ["s / run"]
    rows = []
    for m in summary["methods"]:
        runs = f"{m['n']}" + (f" ({m['failed']} failed)" if m["failed"] else "")
        rows.append([m["method"] + (" (best)" if m["method"] == summary["best"] else ""), runs]
                    + [_pm(m["stats"][k]) for k in summary["metrics"]] + [_pm(m["wall_s"], 1.0, 1)])
    return header, rows


def paired_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    header = ["best − method", "paired seeds"] + [k.upper() if k != "f_score" else "F" for k in summary["metrics"]]
    rows = [[f"{summary['best']} − {name}", str(p["n"])] + [_pm(p[k]) for k in summary["metrics"]]
            for name, p in summary["paired"].items()]
    return header, rows


def render_text(summary: dict) -> str:
    """The table for the terminal."""
    lines = []
    for header, rows in (table_rows(summary), paired_rows(summary)):
        if not rows:
            continue
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines += [fmt.format(*header).rstrip(), fmt.format(*["-" * w for w in widths]).rstrip()]
        lines += [fmt.format(*r).rstrip() for r in rows] + [""]
    return "\n".join(lines)


def _md_table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(x) for x in row) + " |" for row in rows]


def _html_table(header, rows) -> str:
    esc = html.escape
    return ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{esc(str(x))}</td>" for x in r) + "</tr>" for r in rows) + "</table>")


def _figure(summary: dict, out: Path, stem: str) -> list[Path]:
    if not summary["metrics"]:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    methods = summary["methods"]
    x = np.arange(len(summary["metrics"]))
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(x), 3.4))
    for j, m in enumerate(methods):
        means = [100 * (m["stats"][k][0] or 0) for k in summary["metrics"]]
        sds = [100 * (m["stats"][k][1] or 0) for k in summary["metrics"]]
        ax.bar(x + (j - (len(methods) - 1) / 2) * width, means, width, yerr=sds, capsize=2, label=f"{m['method']} (n={m['n']})")
    ax.set_xticks(x, [k.upper() for k in summary["metrics"]])
    ax.set(ylabel="%", title=f"{stem}: mean ± std over seeds")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"{stem}_compare.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def write_comparison_report(summary: dict, out_dir, stem: str, context: list[str], plots: bool = True) -> list[Path]:
    """``<stem>_compare.md`` / ``.html`` (+ ``.png``) in ``out_dir``; ``context`` lines say what ran on what."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figure(summary, out, stem) if plots else []
    header, rows = table_rows(summary)
    p_header, p_rows = paired_rows(summary)
    scored = bool(summary["metrics"])
    intro = ("Values in %, mean ± std over seeds; s / run is wall time per run." if scored else
             "The file has no labels: the methods clustered it, nothing could be scored; s / run is wall time per run.")
    md = [f"# {stem}: methods compared", ""] + [f"- {c}" for c in context] + ["", intro, ""] + _md_table(header, rows)
    if p_rows:
        md += ["", f"## Paired differences against the best method ({summary['best']}, highest mean ACC)", "",
               "Seed by seed (the same seed gives every method the same data and initial draws where they share them), "
               "in points: positive means the best method scored higher.", ""] + _md_table(p_header, p_rows)
    md += [f"\n![{f.stem}]({f.name})" for f in figures]
    esc = html.escape
    page = ([f"<h1>{esc(stem)}: methods compared</h1><ul>"] + [f"<li>{esc(c)}</li>" for c in context]
            + [f"</ul><p>{esc(intro)}</p>", _html_table(header, rows)])
    if p_rows:
        page += [f"<h2>Paired differences against the best method ({esc(str(summary['best']))})</h2>", _html_table(p_header, p_rows)]
    page += [f"<img src='{esc(f.name)}' style='max-width:900px'>" for f in figures]
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
    md_path, html_path = out / f"{stem}_compare.md", out / f"{stem}_compare.html"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    html_path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(stem)}</title><style>{style}</style>"
                         f"</head><body>{''.join(page)}</body></html>\n", encoding="utf-8")
    return [md_path, html_path, *figures]
