"""Reports: the published table beside the reproduced mean ± std, band and verdict; claims; plots.

``compare(paper, store)`` computes everything as plain data (tested directly); ``write_report`` renders
Markdown and HTML, and PNG figures when matplotlib (the ``plot`` extra) is installed.
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .references import load_references, run_plan
from .store import ResultStore
from .verdict import ABS_FLOOR, MIN_RUNS, Z, band, greater_claim_outcome, verdict

__all__ = ["compare", "write_report", "stored_runs"]


def stored_runs(store: ResultStore, method, variant, dataset, protocol, missing_rate) -> dict:
    """Successful runs of one configuration, preferring the runs with the paper's settings.

    Runs made with overrides (e.g. fewer epochs) are a different experiment: they are used only when
    no run with the paper's settings exists, and the report says which overrides they carry.
    """
    rows = store.query(method=method, variant=variant, dataset=dataset, protocol=protocol, missing_rate=missing_rate)
    if missing_rate is None:
        rows = [r for r in rows if r["missing_rate"] is None]
    groups = defaultdict(list)
    failed = defaultdict(int)
    for r in rows:
        key = json.dumps(r["overrides"], sort_keys=True)
        if r["status"] == "done":
            groups[key].append(r)
        elif r["status"] == "failed":
            failed[key] += 1
    if not groups:
        return {"rows": [], "overrides": {}, "failed": sum(failed.values())}
    key = "{}" if "{}" in groups else max(groups, key=lambda k: max(r["finished_at"] or 0 for r in groups[k]))
    return {"rows": groups[key], "overrides": json.loads(key), "failed": failed[key]}


def _stats(values: list[float]) -> tuple:
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def compare(paper: str, store: ResultStore) -> dict:
    refs = load_references(paper)
    plan, not_run = run_plan(refs)
    plan_by_cfg = {(p["method"], p["variant"], p["dataset"], p["protocol"], p["missing_rate"]): p for p in plan}
    absent_by_cfg = {(p["method"], p["variant"], p["dataset"], p["protocol"], p["missing_rate"]): p for p in not_run}
    rows = []
    for c in refs.testable():
        rows.append(_compare_cell(c, c.config, plan_by_cfg, absent_by_cfg, store))
        for alt in c.also_on:  # the same published cell against another reading of the paper's data
            row = _compare_cell(c, (c.method, c.variant, alt, c.protocol, c.missing_rate), plan_by_cfg, absent_by_cfg, store)
            row["also_on"] = alt
            rows.append(row)
    claims = [_evaluate_claim(cl, store) for cl in refs.claims]
    findings = _stand_in_findings(refs.claims, store)
    summary = defaultdict(int)
    for r in rows:
        summary[r["verdict"]] += 1
    return {"paper": refs.paper, "meta": refs.meta, "rows": rows, "claims": claims, "summary": dict(summary),
            "findings": findings, "reference_rows": [c for c in refs.cells if c.reference_only]}


FINDING_METRICS = ("acc", "nmi", "ari", "f_score", "purity")


def _stand_in_findings(claims, store) -> list[dict]:
    """Every metric of every configuration a claim compares on stand-in data (one row per configuration).

    The claims themselves look at one metric; a reader judging a finding wants the whole picture.
    """
    from ..data.registry import status

    seen, rows = set(), []
    for claim in claims:
        members = [claim.better, *claim.worse] if claim.kind == "greater" else [claim.subject]
        for d in claim.stand_ins:
            if status(d) != "present":
                continue
            for rate in list(claim.missing_rates) or [None]:
                for who in members:
                    key = (d, claim.protocol, rate, who["method"], who["variant"])
                    if key in seen:
                        continue
                    seen.add(key)
                    got = stored_runs(store, who["method"], who["variant"], d, claim.protocol, rate)
                    done = [r for r in got["rows"] if r["metrics"]]
                    stats = {m: _stats([r["metrics"][m] for r in done if m in r["metrics"]]) for m in FINDING_METRICS}
                    walls = [r["wall_time_s"] for r in done if r["wall_time_s"] is not None]
                    rows.append({"dataset": d, "protocol": claim.protocol, "rate": rate, "method": who["method"],
                                 "variant": who["variant"], "n": len(done), "stats": stats, "overrides": got["overrides"],
                                 "wall_time_s": float(np.mean(walls)) if walls else None})
    order = list(dict.fromkeys(r["dataset"] for r in rows))
    return sorted(rows, key=lambda r: order.index(r["dataset"]))  # one data set's rows together


def _compare_cell(c, cfg, plan_by_cfg, absent_by_cfg, store) -> dict:
    row = {"cell": c, "published": c.value, "band": band(c.std, c.resolution), "run_dataset": None, "also_on": None,
           "mean": None, "std": None, "n": 0, "failed": 0, "overrides": {}, "wall_time_s": None, "detail": ""}
    if cfg in plan_by_cfg:
        p = plan_by_cfg[cfg]
        row["run_dataset"] = p["run_dataset"]
        got = stored_runs(store, c.method, c.variant, p["run_dataset"], c.protocol, c.missing_rate)
        vals = [r["metrics"][c.store_metric] for r in got["rows"] if r["metrics"] and c.store_metric in r["metrics"]]
        row["mean"], row["std"] = _stats(vals)
        row.update(n=len(vals), failed=got["failed"], overrides=got["overrides"])
        walls = [r["wall_time_s"] for r in got["rows"] if r["wall_time_s"] is not None]
        row["wall_time_s"] = float(np.mean(walls)) if walls else None
        row["device"] = ", ".join(sorted({r["device"] for r in got["rows"] if r["device"]}))
        if c.value is None:
            row["verdict"] = "unreadable"
        elif p["verdict_kind"] == "features_differ":
            row["verdict"] = "features_differ"
            row["detail"] = (f"ran on {p['run_dataset']} (the paper's samples, other features)" if row["n"]
                             else f"would run on {p['run_dataset']} (the paper's samples, other features); no runs stored yet")
        else:
            row["verdict"] = verdict(c.value, row["mean"], row["n"], c.std, c.resolution)
    else:
        why = absent_by_cfg.get(cfg)
        row["verdict"] = why["why"] if why else "data_absent"
        row["detail"] = why["detail"] if why else ""
    if c.uncertain and c.note:
        row["detail"] = (row["detail"] + "; " if row["detail"] else "") + "uncertain transcription: " + c.note
    return row


def _nearer_lines(cmp: dict) -> list[str]:
    """For cells run on several readings of the paper's data: which reading lands nearer the paper."""
    lines = []
    by_cell = defaultdict(list)
    for r in cmp["rows"]:
        if r["mean"] is not None and r["published"] is not None:
            by_cell[id(r["cell"])].append(r)
    for rows in by_cell.values():
        if len(rows) < 2:
            continue
        c = rows[0]["cell"]
        best = min(rows, key=lambda r: abs(r["mean"] - r["published"]))
        desc = ", ".join(f"{r['run_dataset']} {_pct(r['mean'])} (n={r['n']})" for r in rows)
        rate = "" if c.missing_rate is None else f" @ {c.missing_rate:.0%}"
        lines.append(f"- {c.metric.upper()}{rate} on {c.dataset} (published {_pct(c.value)}): {desc} — nearer: **{best['run_dataset']}**")
    return lines


def _config_values(store, who, dataset, protocol, rate, metric, overrides_seen=None) -> dict:
    """``{seed: metric}`` over the stored successful runs of one configuration."""
    got = stored_runs(store, who["method"], who["variant"], dataset, protocol, rate)
    vals = {r["seed"]: r["metrics"][metric] for r in got["rows"] if r["metrics"] and metric in r["metrics"]}
    if overrides_seen is not None and got["overrides"] and vals:
        overrides_seen.add(json.dumps(got["overrides"], sort_keys=True))
    return vals


def _mean_and_count(vals: dict) -> tuple:
    return _stats(list(vals.values()))[0], len(vals)


def _paired(better: dict, worse: dict) -> dict | None:
    """Seed-by-seed difference of two configurations (same seed = same split and, for DEC/JECL, same
    pre-training), which separates an ablation's effect from the spread between seeds."""
    seeds = sorted(set(better) & set(worse))
    if len(seeds) < 2:
        return None
    diffs = [better[s] - worse[s] for s in seeds]
    mean, sd = _stats(diffs)
    return {"n": len(seeds), "mean": mean, "std": sd, "wins": sum(d > 0 for d in diffs)}


def _evaluate_claim(claim, store) -> dict:
    from ..data.registry import status

    results = []
    for d in tuple(claim.datasets) + tuple(claim.stand_ins):
        if status(d) != "present":
            continue
        nature = "test" if d in claim.datasets else "finding"
        rates = list(claim.missing_rates) or [None]
        evidence, outcome, overrides = [], "holds", set()
        if claim.kind == "greater":
            for rate in rates:
                bv = _config_values(store, claim.better, d, claim.protocol, rate, claim.metric, overrides)
                b, nb = _mean_and_count(bv)
                for w in claim.worse:
                    wv = _config_values(store, w, d, claim.protocol, rate, claim.metric, overrides)
                    m, nw = _mean_and_count(wv)
                    evidence.append({"rate": rate, "better": claim.better, "better_mean": b, "worse": w, "worse_mean": m,
                                     "paired": _paired(bv, wv), "runs": (nb, nw)})
            outcome = greater_claim_outcome([(e["better_mean"], e["runs"][0], e["worse_mean"], e["runs"][1]) for e in evidence],
                                            claim.tolerance)
        else:
            means = []
            for rate in rates:
                m, n = _mean_and_count(_config_values(store, claim.subject, d, claim.protocol, rate, claim.metric, overrides))
                evidence.append({"rate": rate, "mean": m, "n": n})
                means.append(m if n >= MIN_RUNS else None)
            if any(m is None for m in means):
                outcome = "inconclusive"
            elif any(later > earlier + claim.tolerance for earlier, later in zip(means, means[1:])):
                outcome = "fails"
        results.append({"dataset": d, "nature": nature, "outcome": outcome, "evidence": evidence,
                        "overrides": sorted(overrides)})
    return {"claim": claim, "results": results}


# -- rendering ------------------------------------------------------------------------------------
def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _cell_rows(cmp: dict) -> list[list[str]]:
    out = []
    for r in cmp["rows"]:
        c = r["cell"]
        rate = "" if c.missing_rate is None else f"{c.missing_rate:.0%}"
        repro = "–" if r["mean"] is None else f"{_pct(r['mean'])} ± {_pct(r['std'])} (n={r['n']})"
        if r["failed"]:
            repro += f", {r['failed']} failed"
        if r["overrides"]:
            repro += f", overrides {r['overrides']}"
        shown = c.dataset + (f" → {r['run_dataset']}" if r["run_dataset"] and r["run_dataset"] != c.dataset else "")
        if r.get("also_on") and not r["run_dataset"]:
            shown = f"{c.dataset} → {r['also_on']}"
        out.append([c.table, c.method, c.variant, shown,
                    c.protocol + (f" {rate}" if rate else ""), c.metric.upper(), _pct(c.value), repro, f"±{_pct(r['band'])}",
                    r["verdict"], r["detail"]])
    return out


_FINDING_HEADER = ["dataset", "protocol", "method", "variant", "runs", "ACC", "NMI", "ARI", "F", "Purity", "s / run"]


def _finding_rows(cmp: dict) -> list[list[str]]:
    out = []
    for f in cmp.get("findings", []):
        if not f["n"]:
            continue
        cells = [f"{_pct(m)} ± {_pct(sd)}" if f["n"] > 1 else _pct(m) for m, sd in (f["stats"][k] for k in FINDING_METRICS)]
        proto = f["protocol"] + ("" if f["rate"] is None else f" {f['rate']:.0%}")
        runs = str(f["n"]) + (f" (overrides {f['overrides']})" if f["overrides"] else "")
        wall = "–" if f["wall_time_s"] is None else f"{f['wall_time_s']:.0f}"
        out.append([f["dataset"], proto, f["method"], f["variant"], runs, *cells, wall])
    return out


_HEADER = ["table", "method", "variant", "dataset", "protocol", "metric", "published %", "reproduced % (mean ± std)", "band", "verdict", "notes"]


def _summary_line(cmp: dict) -> str:
    s = cmp["summary"]
    order = ("reproduced", "below", "above", "inconclusive", "features_differ", "data_absent", "not_implemented", "unreadable")
    return " / ".join(f"{s.get(k, 0)} {k}" for k in order)


def _claim_lines(cmp: dict) -> list[str]:
    lines = []
    for item in cmp["claims"]:
        cl = item["claim"]
        if not item["results"]:
            lines.append(f"- **{cl.id}** — {cl.text}: no data present to evaluate it")
        for res in item["results"]:
            ev = []
            for e in res["evidence"]:
                rate = "" if e["rate"] is None else f"@{e['rate']:.0%} "
                if "better_mean" in e:
                    text = f"{rate}{e['better']['variant']} {_pct(e['better_mean'])} vs {e['worse']['method']}/{e['worse']['variant']} {_pct(e['worse_mean'])}"
                    pair = e.get("paired")
                    if pair:
                        text += (f" (seed by seed: {100 * pair['mean']:+.2f} ± {100 * pair['std']:.2f} pts, "
                                 f"{e['better']['variant']} ahead in {pair['wins']}/{pair['n']})")
                    ev.append(text)
                else:
                    ev.append(f"{rate}{_pct(e['mean'])}")
            label = "test" if res["nature"] == "test" else "finding (stand-in data: not a pass/fail gate)"
            if res.get("overrides"):
                label += "; from runs with overrides " + ", ".join(res["overrides"]) + " (not the paper's settings)"
            lines.append(f"- **{cl.id}** on {res['dataset']} — {cl.text} ({cl.metric.upper()}, tolerance {_pct(cl.tolerance)} pts): "
                         f"**{res['outcome']}**, {label}. " + "; ".join(ev))
    return lines


def render_markdown(cmp: dict, figures: list[Path]) -> str:
    meta = cmp["meta"]
    lines = [f"# {cmp['paper']}: {meta.get('title', '')}", "",
             f"**Summary:** {_summary_line(cmp)}", "",
             f"Band = max({ABS_FLOOR * 100:.0f} pts, {Z:g} × published std, half the last printed digit); "
             f"verdicts need ≥ {MIN_RUNS} successful runs. Values in %.", "",
             "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    for row in _cell_rows(cmp):
        lines.append("| " + " | ".join(x.replace("|", "/") for x in row) + " |")
    nearer = _nearer_lines(cmp)
    if nearer:
        lines += ["", "## Which reading of the data lands nearer the paper", ""] + nearer
    lines += ["", "## Claims", ""] + (_claim_lines(cmp) or ["(none)"])
    if any(f["n"] for f in cmp.get("findings", [])):
        lines += ["", "## Findings on stand-in data", "",
                  "The paper's data are absent here; its claims were run on these multi-view sets instead. "
                  "Other data, so not a verdict on the paper: what the method does on them. Values in %, mean ± std over runs. "
                  "s / run is wall time; where methods share pre-training (DEC, JECL), the first run of a data set and seed pays for it.", "",
                  "| " + " | ".join(_FINDING_HEADER) + " |", "|" + "---|" * len(_FINDING_HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in _finding_rows(cmp)]
    timing = [r for r in cmp["rows"] if r.get("wall_time_s")]
    if timing:
        lines += ["", "## Runs", ""]
        seen = set()
        for r in timing:
            key = (r["cell"].method, r["cell"].variant, r["run_dataset"], r["cell"].missing_rate)
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"- {key[0]}/{key[1]} on {key[2]}"
                         + ("" if key[3] is None else f" @ {key[3]:.0%}") + f": {r['n']} runs, {r['wall_time_s']:.1f} s each on {r.get('device') or '?'}")
    if figures:
        lines += ["", "## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures]
    lines += ["", f"{len(cmp['reference_rows'])} baseline cells of other methods are kept in the reference file for context (reference_only)."]
    return "\n".join(lines) + "\n"


def render_html(cmp: dict, figures: list[Path]) -> str:
    esc = html.escape
    verdict_colour = {"reproduced": "#d4edda", "below": "#f8d7da", "above": "#fff3cd", "features_differ": "#e2e3e5"}
    body = [f"<h1>{esc(cmp['paper'])}: {esc(cmp['meta'].get('title', ''))}</h1>",
            f"<p><b>Summary:</b> {esc(_summary_line(cmp))}</p>",
            f"<p>Band = max({ABS_FLOOR * 100:.0f} pts, {Z:g} × published std, half the last printed digit). Values in %.</p>",
            "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in _HEADER) + "</tr>"]
    for row in _cell_rows(cmp):
        colour = verdict_colour.get(row[9], "#ffffff")
        body.append(f"<tr style='background:{colour}'>" + "".join(f"<td>{esc(x)}</td>" for x in row) + "</tr>")
    body.append("</table><h2>Claims</h2><ul>")
    body += [f"<li>{esc(line[2:])}</li>" for line in _claim_lines(cmp)]
    body.append("</ul>")
    finding_rows = _finding_rows(cmp)
    if finding_rows:
        body.append("<h2>Findings on stand-in data</h2><p>Other data than the paper's: not a verdict on the paper. Values in %.</p><table><tr>"
                    + "".join(f"<th>{esc(h)}</th>" for h in _FINDING_HEADER) + "</tr>")
        body += ["<tr>" + "".join(f"<td>{esc(x)}</td>" for x in row) + "</tr>" for row in finding_rows]
        body.append("</table>")
    body += [f"<h2>{esc(f.stem)}</h2><img src='{esc(f.name)}' style='max-width:900px'>" for f in figures]
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>mmclust report: {esc(cmp['paper'])}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plots(cmp: dict, out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    figures = []
    ran = [r for r in cmp["rows"] if r["mean"] is not None and r["published"] is not None]
    # missing-rate curves: one panel per (dataset, metric) of incomplete-protocol cells
    curves = defaultdict(list)
    for r in ran:
        c = r["cell"]
        if c.missing_rate is not None:
            curves[(c.dataset, r["run_dataset"], c.metric, c.method if c.variant == "full" else f"{c.method}/{c.variant}")].append(r)
    if curves:
        keys = sorted(curves)
        fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
        for ax, key in zip(axes[0], keys):
            pts = sorted(curves[key], key=lambda r: r["cell"].missing_rate)
            x = [100 * r["cell"].missing_rate for r in pts]
            pub = np.array([100 * r["published"] for r in pts])
            bnd = np.array([100 * r["band"] for r in pts])
            mean = np.array([100 * r["mean"] for r in pts])
            sd = np.array([100 * (r["std"] or 0) for r in pts])
            ax.fill_between(x, pub - bnd, pub + bnd, color="tab:blue", alpha=0.15, label="published ± band")
            ax.plot(x, pub, "o-", color="tab:blue", label="published")
            ax.errorbar(x, mean, yerr=sd, fmt="s--", color="tab:red", capsize=3, label="reproduced (mean ± std)")
            title = f"{key[3]} {key[2].upper()} on {key[0]}" + (f"\n(ran on {key[1]})" if key[1] != key[0] else "")
            ax.set(title=title, xlabel="missing rate (%)", ylabel=f"{key[2].upper()} (%)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        figures.append(_save(fig, out / f"{cmp['paper']}_missing_rate.png"))
    # bars: published vs reproduced with the band, one bar group per cell
    if ran:
        labels = [f"{r['cell'].variant}\n{r['run_dataset']}\n{r['cell'].metric}"
                  + (f" {r['cell'].missing_rate:.0%}" if r["cell"].missing_rate is not None else "")
                  + ("\n(uncertain)" if r["cell"].uncertain else "") for r in ran]
        x = np.arange(len(ran))
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(ran)), 5))
        pub = np.array([100 * r["published"] for r in ran])
        ax.bar(x - 0.2, pub, 0.4, yerr=[100 * r["band"] for r in ran], capsize=3, color="tab:blue", alpha=0.7, label="published (± band)")
        ax.bar(x + 0.2, [100 * r["mean"] for r in ran], 0.4, yerr=[100 * (r["std"] or 0) for r in ran], capsize=3,
               color=["tab:green" if r["verdict"] == "reproduced" else "tab:red" if r["verdict"] == "below" else "tab:orange" if r["verdict"] == "above" else "tab:gray" for r in ran],
               label="reproduced (± std; green reproduced, red below, orange above, grey features differ)")
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel("%")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=1, frameon=False)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{cmp['paper']}: published vs reproduced")
        figures.append(_save(fig, out / f"{cmp['paper']}_cells.png"))
    found = [f for f in cmp.get("findings", []) if f["n"]]
    if found:
        panels = defaultdict(list)  # one per (data set, protocol, rate), in the findings table's order
        for f in found:
            panels[(f["dataset"], f["protocol"], f["rate"])].append(f)
        widest = max(len(group) for group in panels.values())
        # one panel per data set, stacked: panels stay readable however many data sets there are
        fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.0, 1.2 * widest + 1.5), 3.4 * len(panels)), squeeze=False)
        for ax, (d, group) in zip(axes[:, 0], panels.items()):
            x = np.arange(len(group))
            for j, (metric, colour) in enumerate((("acc", "tab:blue"), ("nmi", "tab:orange"), ("ari", "tab:green"))):
                means = [100 * (f["stats"][metric][0] or 0) for f in group]
                sds = [100 * (f["stats"][metric][1] or 0) for f in group]
                ax.bar(x + (j - 1) * 0.27, means, 0.27, yerr=sds, capsize=2, color=colour, label=metric.upper())
            ax.set_xticks(x, [f"{f['method']}\n{f['variant']}".replace("_", " ") for f in group], fontsize=7)
            ax.set(title=d[0] + ("" if d[2] is None else f" @ {d[2]:.0%}") + f" (n={min(f['n'] for f in group)})",
                   ylabel="%", ylim=(0, 100))
            ax.grid(axis="y", alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"{cmp['paper']}: claims on stand-in data (findings, mean ± std)")
        figures.append(_save(fig, out / f"{cmp['paper']}_findings.png"))
    return figures


def write_report(paper: str, store: ResultStore, out_dir: str | Path = "reports", plots: bool = True) -> list[Path]:
    """Write ``<paper>.md`` and ``<paper>.html`` (+ PNG figures) into ``out_dir``; returns the paths."""
    cmp = compare(paper, store)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = _plots(cmp, out) if plots else []
    md, page = out / f"{cmp['paper']}.md", out / f"{cmp['paper']}.html"
    md.write_text(render_markdown(cmp, figures), encoding="utf-8")
    page.write_text(render_html(cmp, figures), encoding="utf-8")
    return [md, page, *figures]
