"""Reports: the published table beside the reproduced mean ± std, band and verdict; claims; plots.

``compare(paper, store)`` computes everything as plain data (tested directly); ``write_report`` renders
Markdown and HTML, and PNG figures when matplotlib (the ``plot`` extra) is installed.
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from .references import load_references, run_plan
from .store import ResultStore
from .verdict import ABS_FLOOR, CONFIDENCE, MIN_RUNS, Z, assess, band, decreasing_claim_outcome, greater_claim_outcome

__all__ = ["compare", "write_report", "configuration_runs"]


@functools.lru_cache(maxsize=512)
def _paper_config(method, variant, dataset, protocol, rate, split, data_sha256=None) -> tuple[str | None, str | None]:
    """``(config_id, code fingerprint)`` of a configuration at the paper's settings under the current code.

    ``data_sha256`` stands in for the file's hash where the registry does not know it and the file is absent now
    (a user-supplied feature file): the hash its stored runs recorded."""
    from ..data import DataError
    from .runner import RunSpec, _ids

    spec = RunSpec(method=method, dataset=dataset, variant=variant, protocol=protocol, missing_rate=rate, split=split)
    try:
        ident = spec.identity(data_sha256=data_sha256)
    except (DataError, FileNotFoundError):
        return None, None
    return _ids(ident)[1], ident["code"]


def configuration_runs(store: ResultStore, method, variant, dataset, protocol, missing_rate, split=None) -> dict:
    """The runs of one configuration that may feed a verdict, and what was left out.

    ``rows``: successful runs at the paper's settings (no overrides) whose full identity minus the seed
    (parameters, data sha256, code fingerprint, split) is the one the current code gives: one configuration,
    never a mix. ``failed``: failed runs of that configuration. ``other``: groups of runs of the current code
    made with overrides (e.g. fewer epochs), each ``{overrides, rows, failed}``, shown apart with no verdict.
    ``stale``: finished runs from other code, data or defaults, which nothing uses. ``unfinished``: runs of the
    configuration still marked running (in progress, or killed mid-run: a resumed sweep reruns them).
    """
    rows = store.query(method=method, variant=variant, dataset=dataset, protocol=protocol, missing_rate=missing_rate)
    rows = [r for r in rows if (missing_rate is not None or r["missing_rate"] is None) and r.get("split") == split]
    want, code = _paper_config(method, variant, dataset, protocol, missing_rate, split)
    recorded = {r["data_sha256"] for r in rows if r.get("data_sha256")}
    if want is None and len(recorded) == 1:  # the file is absent now and only its stored runs know its hash
        want, code = _paper_config(method, variant, dataset, protocol, missing_rate, split, recorded.pop())
    primary = [r for r in rows if want is not None and r.get("config_id") == want]
    other, stale = defaultdict(lambda: {"rows": [], "failed": 0}), 0
    for r in rows:
        if (want is not None and r.get("config_id") == want) or r["status"] == "running":
            continue
        if r["overrides"] and code is not None and r.get("code_version") == code:
            group = other[(r["config_id"], json.dumps(r["overrides"], sort_keys=True))]
            group["overrides"] = r["overrides"]
            if r["status"] == "done":
                group["rows"].append(r)
            group["failed"] += _failures(r)
        else:
            stale += 1
    return {"rows": [r for r in primary if r["status"] == "done"], "failed": sum(_failures(r) for r in primary),
            "unfinished": sum(r["status"] == "running" for r in primary), "other": list(other.values()), "stale": stale}


def _failures(row) -> int:
    """Failed attempts of a run: its recorded count (a retried run keeps its failures), else 1 for a failed row."""
    return max(int(row.get("failures") or 0), 1 if row["status"] == "failed" else 0)


def _values(rows, metric) -> list[float]:
    return [r["metrics"][metric] for r in rows if r["metrics"] and r["metrics"].get(metric) is not None]


def _stats(values: list[float]) -> tuple:
    if not values:
        return None, None
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _mean_wall(rows):
    walls = [r["wall_time_s"] for r in rows if r["wall_time_s"] is not None]
    return float(np.mean(walls)) if walls else None


def compare(paper: str, store: ResultStore) -> dict:
    refs = load_references(paper)
    plan, not_run = run_plan(refs, findings=True)
    plan_by_cfg = {(p["method"], p["variant"], p["dataset"], p["protocol"], p["missing_rate"]): p for p in plan
                   if p["verdict_kind"] != "finding"}
    absent_by_cfg = {(p["method"], p["variant"], p["dataset"], p["protocol"], p["missing_rate"]): p for p in not_run}
    rows, readings, other, stale = [], [], [], 0
    seen_configs = set()
    for c in refs.testable():
        row, got = _compare_cell(c, plan_by_cfg, absent_by_cfg, store)
        rows.append(row)
        if got is not None and row["config"] not in seen_configs:
            seen_configs.add(row["config"])
            stale += got["stale"]
            other += [{"cell": c, "run_dataset": row["run_dataset"], **g} for g in got["other"] if g["rows"] or g["failed"]]
        readings += _other_readings(c, row, store, refs.beside if c.method == refs.paper else ())
    claims = [_evaluate_claim(cl, refs, store) for cl in refs.claims]
    findings = _stand_in_findings(refs, store)
    summary = defaultdict(int)
    for r in rows:
        summary[r["verdict"]] += 1
    return {"paper": refs.paper, "meta": refs.meta, "rows": rows, "claims": claims, "summary": dict(summary),
            "findings": findings, "readings": readings, "other_configs": other, "stale": stale,
            "label_informed": _label_informed_defaults(refs),
            "reference_rows": [c for c in refs.cells if c.reference_only]}


def _label_informed_defaults(refs) -> dict:
    """``{method: {parameter: why}}``: defaults chosen by measuring with labels on evaluation data."""
    from ..methods import METHODS

    out = {}
    for m in sorted({c.method for c in refs.testable()}):
        notes = getattr(METHODS.get(m), "LABEL_INFORMED_DEFAULTS", None)
        if notes:
            out[m] = dict(notes)
    return out


FINDING_METRICS = ("acc", "nmi", "ari", "f_score", "purity")


def _stand_in_findings(refs, store) -> list[dict]:
    """Every metric of every configuration a claim compares on stand-in data (one row per configuration), plus
    the paper's ``[meta] beside`` variants (e.g. the authors' code's settings) next to its own method.

    The claims themselves look at one metric; a reader judging a finding wants the whole picture.
    """
    seen, rows = set(), []
    for claim in refs.claims:
        members = [claim.better, *claim.worse] if claim.kind == "greater" else [claim.subject]
        members += [{"method": refs.paper, "variant": v} for v in refs.beside
                    if any(w["method"] == refs.paper for w in members)]
        for d in claim.stand_ins:
            if not _readable(d, store):
                continue
            split = refs.split_for(d, claim)
            for rate in list(claim.missing_rates) or [None]:
                for who in members:
                    key = (d, claim.protocol, rate, who["method"], who["variant"])
                    if key in seen:
                        continue
                    seen.add(key)
                    got = configuration_runs(store, who["method"], who["variant"], d, claim.protocol, rate, split)
                    done = got["rows"]
                    stats = {m: _stats(_values(done, m)) for m in FINDING_METRICS}
                    rows.append({"dataset": d, "protocol": claim.protocol, "rate": rate, "method": who["method"],
                                 "variant": who["variant"], "n": len(done), "failed": got["failed"], "stats": stats,
                                 "split": split, "wall_time_s": _mean_wall(done)})
    order = list(dict.fromkeys(r["dataset"] for r in rows))
    return sorted(rows, key=lambda r: order.index(r["dataset"]))  # one data set's rows together


def _stored_reading(c, store) -> dict | None:
    """Where a cell's data are absent or corrupt *now* but its runs are stored: the reading they were made on
    (the paper's data, else its stand-in), as a plan entry. The report shows them: it never hides stored runs."""
    from ..data.registry import get_spec

    for dataset, kind in ((c.dataset, "test"), (c.stand_in, "features_differ")):
        if dataset is None:
            continue
        split = "dataset" if c.split is not None and get_spec(dataset).fixed_split else c.split
        got = configuration_runs(store, c.method, c.variant, dataset, c.protocol, c.missing_rate, split)
        if got["rows"] or got["failed"] or got["unfinished"] or got["other"]:
            return {"run_dataset": dataset, "split": split, "verdict_kind": kind}
    return None


def _compare_cell(c, plan_by_cfg, absent_by_cfg, store) -> tuple[dict, dict | None]:
    cfg = c.config[:5]
    row = {"cell": c, "published": c.value, "band": band(c.std, c.resolution), "run_dataset": None, "split": c.split,
           "mean": None, "std": None, "n": 0, "failed": 0, "wall_time_s": None, "detail": "", "assessment": None,
           "config": None}
    got, p, now = None, plan_by_cfg.get(cfg), ""
    why = absent_by_cfg.get(cfg)
    if p is None and why is not None and why["why"] in ("data_absent", "data_corrupt"):
        p = _stored_reading(c, store)
        now = f"{why.get('file', 'the data file')} is {'absent' if why['why'] == 'data_absent' else 'corrupt'} here now; from the stored runs"
    if p is not None:
        row["run_dataset"], row["split"] = p["run_dataset"], p["split"]
        row["config"] = (c.method, c.variant, p["run_dataset"], c.protocol, c.missing_rate, p["split"])
        got = configuration_runs(store, *row["config"])
        vals = _values(got["rows"], c.store_metric)
        row["mean"], row["std"] = _stats(vals)
        row.update(n=len(vals), failed=got["failed"], wall_time_s=_mean_wall(got["rows"]), unfinished=got["unfinished"])
        row["device"] = ", ".join(sorted({r["device"] for r in got["rows"] if r["device"]}))
        if c.value is None:
            row["verdict"] = "unreadable"
        elif p["verdict_kind"] == "features_differ":
            row["verdict"] = "features_differ"
            row["detail"] = (f"ran on {p['run_dataset']} (the paper's samples, other features)" if row["n"]
                             else f"would run on {p['run_dataset']} (the paper's samples, other features); no runs stored yet")
        else:
            a = assess(c.value, vals, c.std, c.resolution, failed=got["failed"])
            row["verdict"], row["assessment"] = a.verdict, a
            row["detail"] = _assessment_note(a)
            if got["unfinished"]:
                row["detail"] += f"; {got['unfinished']} run(s) still marked running (in progress, or killed: rerun the sweep)"
        if now:
            row["detail"] = (row["detail"] + "; " if row["detail"] else "") + now
    else:
        row["verdict"] = why["why"] if why else "data_absent"
        row["detail"] = why["detail"] if why else ""
    if c.uncertain and c.note:
        row["detail"] = (row["detail"] + "; " if row["detail"] else "") + "uncertain transcription: " + c.note
    return row, got


def _assessment_note(a) -> str:
    if a.n == 0:
        return "no runs at the paper's settings stored yet"
    lo, hi = a.interval
    ci = "" if not math.isfinite(a.half_width) else f"{CONFIDENCE:.0%} CI of the mean [{_pct(lo)}, {_pct(hi)}]"
    if a.verdict == "unstable":
        return f"{a.failed} of {a.n + a.failed} runs failed" + (f"; {ci}" if ci else "")
    if a.verdict != "inconclusive":
        return ci
    if a.n < MIN_RUNS:
        return f"fewer than {MIN_RUNS} successful runs"
    decide = (f"about {a.runs_to_decide} runs at this spread would decide" if a.runs_to_decide
              else "no practical number of runs can decide: the mean sits at or near the band's edge")
    return f"{ci}; {decide}"


def _other_readings(c, row, store, beside=()) -> list[dict]:
    """The same published cell against other readings of the paper's data, and against the ``beside`` variants
    (e.g. the authors' code's settings) on the cell's own reading: findings with numbers, no verdict."""
    from ..data.registry import get_spec, status

    if row["verdict"] in ("data_absent", "data_corrupt", "not_implemented"):
        candidates = []
    else:
        candidates = [(alt, "dataset" if c.split and get_spec(alt).fixed_split else c.split, f"reading {alt}")
                      for alt in c.also_on if _readable(alt, store)]
        if c.split is not None and row["run_dataset"]:
            candidates.append((row["run_dataset"], None, "all rows (fit and score on the same rows, no held-out split)"))
        if row["run_dataset"]:
            candidates += [(row["run_dataset"], row["split"], f"variant {v} on {row['run_dataset']}", v) for v in beside]
    out = []
    for dataset, split, what, *variant in candidates:
        got = configuration_runs(store, c.method, variant[0] if variant else c.variant, dataset, c.protocol,
                                 c.missing_rate, split)
        vals = _values(got["rows"], c.store_metric)
        if not vals and not got["failed"]:
            continue
        mean, sd = _stats(vals)
        out.append({"cell": c, "dataset": dataset, "split": split, "what": what, "mean": mean, "std": sd, "n": len(vals),
                    "failed": got["failed"]})
    return out


def _readable(dataset: str, store) -> bool:
    """Data to report on: the file is present, or runs on it are stored (shown even when the file is gone now)."""
    from ..data.registry import status

    return status(dataset) == "present" or bool(store.query(dataset=dataset))


def _config_values(store, who, dataset, protocol, rate, metric, split) -> tuple[dict, int]:
    """``({seed: metric}, failed)`` over the runs of one configuration at the paper's settings."""
    got = configuration_runs(store, who["method"], who["variant"], dataset, protocol, rate, split)
    vals = {r["seed"]: r["metrics"][metric] for r in got["rows"] if r["metrics"] and r["metrics"].get(metric) is not None}
    return vals, got["failed"]


def _paired(better: dict, worse: dict) -> dict | None:
    """Seed-by-seed difference of two configurations (same seed = same split and, for DEC/JECL, same
    pre-training), which separates an ablation's effect from the spread between seeds."""
    seeds = sorted(set(better) & set(worse))
    if len(seeds) < 2:
        return None
    diffs = [better[s] - worse[s] for s in seeds]
    mean, sd = _stats(diffs)
    return {"n": len(seeds), "mean": mean, "std": sd, "wins": sum(d > 0 for d in diffs), "diffs": diffs}


def _evaluate_claim(claim, refs, store) -> dict:
    results = []
    for d in tuple(claim.datasets) + tuple(claim.stand_ins):
        if not _readable(d, store):
            continue
        split = refs.split_for(d, claim)
        nature = "test" if d in claim.datasets else "finding"
        rates = list(claim.missing_rates) or [None]
        evidence, failed, total = [], 0, 0
        if claim.kind == "greater":
            for rate in rates:
                bv, bf = _config_values(store, claim.better, d, claim.protocol, rate, claim.metric, split)
                failed, total = failed + bf, total + bf + len(bv)
                for w in claim.worse:
                    wv, wf = _config_values(store, w, d, claim.protocol, rate, claim.metric, split)
                    failed, total = failed + wf, total + wf + len(wv)
                    evidence.append({"rate": rate, "better": claim.better, "better_mean": _stats(list(bv.values()))[0],
                                     "worse": w, "worse_mean": _stats(list(wv.values()))[0], "paired": _paired(bv, wv),
                                     "runs": (len(bv), len(wv))})
            outcome = greater_claim_outcome([(e["paired"] or {}).get("diffs", []) for e in evidence], claim.tolerance,
                                            failed, total)
        else:
            by_rate = []
            for rate in rates:
                vals, f = _config_values(store, claim.subject, d, claim.protocol, rate, claim.metric, split)
                failed, total = failed + f, total + f + len(vals)
                by_rate.append(vals)
                evidence.append({"rate": rate, "mean": _stats(list(vals.values()))[0], "n": len(vals)})
            steps = [(_paired(later, earlier) or {}).get("diffs", []) for earlier, later in zip(by_rate, by_rate[1:])]
            outcome = decreasing_claim_outcome(steps, claim.tolerance, failed, total)
        results.append({"dataset": d, "nature": nature, "outcome": outcome, "evidence": evidence, "failed": failed,
                        "split": split})
    return {"claim": claim, "results": results}


# -- rendering ------------------------------------------------------------------------------------
def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _split_text(split) -> str:
    if split is None:
        return ""
    if split == "dataset":
        return "held-out: the data set's own split"
    key, _, value = split.partition("=")
    return f"held-out: {value} test rows" if key == "test" else f"held-out: {float(value):.0%} of rows for test"


def _rate(rate) -> str:
    return "" if rate is None else f"{rate:.0%}"


def _cell_rows(cmp: dict) -> list[list[str]]:
    out = []
    for r in cmp["rows"]:
        c = r["cell"]
        repro = "–" if r["mean"] is None else f"{_pct(r['mean'])} ± {_pct(r['std'])} (n={r['n']}, {r['failed']} failed)"
        shown = c.dataset + (f" → {r['run_dataset']}" if r["run_dataset"] and r["run_dataset"] != c.dataset else "")
        proto = " ".join(x for x in (c.protocol, _rate(c.missing_rate)) if x)
        if r["split"]:
            proto += f"; {_split_text(r['split'])}"
        out.append([c.table, c.method, c.variant, shown, proto, c.metric.upper(), _pct(c.value), repro, f"±{_pct(r['band'])}",
                    r["verdict"], r["detail"]])
    return out


_FINDING_HEADER = ["dataset", "protocol", "method", "variant", "runs", "ACC", "NMI", "ARI", "F", "Purity", "s / run"]


def _finding_rows(cmp: dict) -> list[list[str]]:
    out = []
    for f in cmp.get("findings", []):
        if not f["n"]:
            continue
        cells = [f"{_pct(m)} ± {_pct(sd)}" if f["n"] > 1 else _pct(m) for m, sd in (f["stats"][k] for k in FINDING_METRICS)]
        proto = " ".join(x for x in (f["protocol"], _rate(f["rate"])) if x) + (f"; {_split_text(f['split'])}" if f["split"] else "")
        runs = f"{f['n']} ({f['failed']} failed)"
        wall = "–" if f["wall_time_s"] is None else f"{f['wall_time_s']:.0f}"
        out.append([f["dataset"], proto, f["method"], f["variant"], runs, *cells, wall])
    return out


_READING_HEADER = ["table", "cell", "published %", "reading", "reproduced % (mean ± std)", "difference (pts)"]


def _reading_rows(cmp: dict) -> list[list[str]]:
    out = []
    for r in cmp.get("readings", []):
        c = r["cell"]
        cell = f"{c.method}/{c.variant} {c.metric.upper()} {_rate(c.missing_rate)} on {c.dataset}".replace("  ", " ")
        what = r["what"] + (f"; {_split_text(r['split'])}" if r["split"] else "")
        repro = "–" if r["mean"] is None else f"{_pct(r['mean'])} ± {_pct(r['std'])} (n={r['n']}, {r['failed']} failed)"
        diff = "–" if r["mean"] is None or c.value is None else f"{100 * (r['mean'] - c.value):+.2f}"
        out.append([c.table, cell, _pct(c.value), what, repro, diff])
    return out


_OTHER_HEADER = ["table", "cell", "ran on", "overrides", "reproduced % (mean ± std)"]


def _other_rows(cmp: dict) -> list[list[str]]:
    out = []
    for g in cmp.get("other_configs", []):
        c = g["cell"]
        vals = _values(g["rows"], c.store_metric)
        mean, sd = _stats(vals)
        cell = f"{c.method}/{c.variant} {c.metric.upper()} {_rate(c.missing_rate)}".replace("  ", " ")
        out.append([c.table, cell, g["run_dataset"], json.dumps(g["overrides"], sort_keys=True),
                    "–" if mean is None else f"{_pct(mean)} ± {_pct(sd)} (n={len(vals)}, {g['failed']} failed)"])
    return out


_HEADER = ["table", "method", "variant", "dataset", "protocol", "metric", "published %", "reproduced % (mean ± std)", "band", "verdict", "notes"]
_ORDER = ("reproduced", "below", "above", "inconclusive", "unstable", "features_differ", "data_absent", "data_corrupt",
          "not_implemented", "unreadable")


def _summary_line(cmp: dict) -> str:
    s = cmp["summary"]
    return " / ".join(f"{s.get(k, 0)} {k}" for k in _ORDER)


def _rules_line() -> str:
    return (f"Band = max({ABS_FLOOR * 100:.0f} pts, {Z:g} × published std, half the last printed digit), never widened. "
            f"`reproduced` iff the {CONFIDENCE:.0%} t-interval of the mean over runs lies inside the band; `below` / `above` "
            f"iff it lies wholly beyond; else `inconclusive` (also with fewer than {MIN_RUNS} successful runs); `unstable` "
            "when more than one run in five failed. Only runs at the paper's settings, of one configuration (parameters, "
            "data, code) and made by the current code, feed a verdict. Values in %.")


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
                    ev.append(f"{rate}{_pct(e['mean'])} (n={e['n']})")
            label = "test" if res["nature"] == "test" else "finding (stand-in data: not a pass/fail gate)"
            if res.get("split"):
                label += f"; {_split_text(res['split'])}"
            if res.get("failed"):
                label += f"; {res['failed']} failed runs"
            lines.append(f"- **{cl.id}** on {res['dataset']} — {cl.text} ({cl.metric.upper()}, tolerance {_pct(cl.tolerance)} pts): "
                         f"**{res['outcome']}**, {label}. " + "; ".join(ev))
    return lines


def _md_table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(x).replace("|", "/") for x in row) + " |" for row in rows]


def render_markdown(cmp: dict, figures: list[Path]) -> str:
    meta = cmp["meta"]
    lines = [f"# {cmp['paper']}: {meta.get('title', '')}", "",
             f"**Summary** (cells at the paper's settings, on its primary reading of the data): {_summary_line(cmp)}", "",
             _rules_line(), ""]
    lines += [f"> {note}" for note in meta.get("notes", [])] + ([""] if meta.get("notes") else [])
    lines += _md_table(_HEADER, _cell_rows(cmp))
    if cmp.get("stale"):
        lines += ["", f"{cmp['stale']} stored runs of these configurations were left out as stale (other code, data or "
                  "defaults than the current ones); `mmclust results` lists them."]
    if cmp.get("label_informed"):
        lines += ["", "## Defaults chosen by measuring with labels", "",
                  "These defaults were set by looking at accuracy on the evaluation data, which a label-free method could "
                  "not do; read the verdicts with that in mind.", ""]
        lines += [f"- `{m}.{param}`: {why}" for m, notes in cmp["label_informed"].items() for param, why in notes.items()]
    rows = _reading_rows(cmp)
    if rows:
        lines += ["", "## Other readings of the paper's data (findings, no verdict)", ""] + _md_table(_READING_HEADER, rows)
    rows = _other_rows(cmp)
    if rows:
        lines += ["", "## Runs at other settings (overrides; no verdict)", ""] + _md_table(_OTHER_HEADER, rows)
    lines += ["", "## Claims", ""] + (_claim_lines(cmp) or ["(none)"])
    if any(f["n"] for f in cmp.get("findings", [])):
        lines += ["", "## Findings on stand-in data", "",
                  "The paper's data are absent here; its claims were run on these multi-view sets instead. "
                  "Other data, so not a verdict on the paper: what the method does on them. Values in %, mean ± std over runs. "
                  "s / run is wall time; where methods share pre-training (DEC, JECL), the first run of a data set and seed pays for it.", ""]
        lines += _md_table(_FINDING_HEADER, _finding_rows(cmp))
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


def _html_table(header, rows, colour=None) -> str:
    esc = html.escape
    body = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        style = f" style='background:{colour(row)}'" if colour else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{esc(str(x))}</td>" for x in row) + "</tr>")
    return "".join(body) + "</table>"


def render_html(cmp: dict, figures: list[Path]) -> str:
    esc = html.escape
    verdict_colour = {"reproduced": "#d4edda", "below": "#f8d7da", "above": "#fff3cd", "unstable": "#f5c6cb",
                      "features_differ": "#e2e3e5"}
    body = [f"<h1>{esc(cmp['paper'])}: {esc(cmp['meta'].get('title', ''))}</h1>",
            f"<p><b>Summary:</b> {esc(_summary_line(cmp))}</p>", f"<p>{esc(_rules_line())}</p>"]
    body += [f"<blockquote>{esc(note)}</blockquote>" for note in cmp["meta"].get("notes", [])]
    body.append(_html_table(_HEADER, _cell_rows(cmp), lambda row: verdict_colour.get(row[9], "#ffffff")))
    if cmp.get("stale"):
        body.append(f"<p>{cmp['stale']} stored runs were left out as stale (other code, data or defaults).</p>")
    if cmp.get("label_informed"):
        body.append("<h2>Defaults chosen by measuring with labels</h2><ul>" + "".join(
            f"<li><code>{esc(m)}.{esc(k)}</code>: {esc(v)}</li>" for m, notes in cmp["label_informed"].items() for k, v in notes.items()) + "</ul>")
    for title, header, rows in (("Other readings of the paper's data (findings, no verdict)", _READING_HEADER, _reading_rows(cmp)),
                                ("Runs at other settings (overrides; no verdict)", _OTHER_HEADER, _other_rows(cmp))):
        if rows:
            body.append(f"<h2>{esc(title)}</h2>" + _html_table(header, rows))
    body.append("<h2>Claims</h2><ul>" + "".join(f"<li>{esc(line[2:])}</li>" for line in _claim_lines(cmp)) + "</ul>")
    finding_rows = _finding_rows(cmp)
    if finding_rows:
        body.append("<h2>Findings on stand-in data</h2><p>Other data than the paper's: not a verdict on the paper. Values in %.</p>"
                    + _html_table(_FINDING_HEADER, finding_rows))
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
               color=[{"reproduced": "tab:green", "below": "tab:red", "above": "tab:orange", "unstable": "tab:purple"}.get(r["verdict"], "tab:gray") for r in ran],
               label="reproduced (± std; green reproduced, red below, orange above, purple unstable, grey inconclusive / features differ)")
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


def runs_shown(cmp: dict) -> int:
    """How many stored runs a report shows (cells, other readings, other settings, findings, claims' evidence),
    failures included. A run shown in two places counts twice: the count compares two reports, it is not a census."""
    claims = sum(sum(e["runs"]) if "runs" in e else e.get("n", 0) for item in cmp.get("claims", [])
                 for res in item["results"] for e in res["evidence"]) + sum(res["failed"] for item in cmp.get("claims", [])
                                                                             for res in item["results"])
    return (sum(r["n"] + r["failed"] for r in cmp["rows"]) + sum(r["n"] + r["failed"] for r in cmp.get("readings", []))
            + sum(len(g["rows"]) + g["failed"] for g in cmp.get("other_configs", []))
            + sum(f["n"] + f["failed"] for f in cmp.get("findings", [])) + claims)


_RUNS_MARK = re.compile(r"<!-- mmclust report: (\d+) stored runs shown -->")


def _runs_in_report(md: Path) -> int | None:
    try:
        found = _RUNS_MARK.search(md.read_text(encoding="utf-8"))
    except OSError:
        return None
    return int(found.group(1)) if found else None


def write_report(paper: str, store: ResultStore, out_dir: str | Path = "reports", plots: bool = True) -> list[Path]:
    """Write ``<paper>.md`` and ``<paper>.html`` (+ PNG figures) into ``out_dir``; returns the paths.

    A report never replaces one that shows more stored runs (another store, say): it is then written beside it
    as ``<paper>.fewer-runs.md`` / ``.html`` (no figures, which would overwrite the fuller report's) and a
    :class:`ReportKept` warning says so.
    """
    cmp = compare(paper, store)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = runs_shown(cmp)
    stem = cmp["paper"]
    held = _runs_in_report(out / f"{stem}.md")
    if held is not None and held > shown:
        warnings.warn(ReportKept(f"{out / (stem + '.md')} shows {held} stored runs, this report {shown}: kept it, and wrote "
                                 f"this one beside it as {stem}.fewer-runs.md / .html"), stacklevel=2)
        stem, plots = f"{stem}.fewer-runs", False
    figures = _plots(cmp, out) if plots else []
    md, page = out / f"{stem}.md", out / f"{stem}.html"
    md.write_text(render_markdown(cmp, figures) + f"\n<!-- mmclust report: {shown} stored runs shown -->\n", encoding="utf-8")
    page.write_text(render_html(cmp, figures), encoding="utf-8")
    return [md, page, *figures]


class ReportKept(UserWarning):
    """A fuller report was kept and the new one written beside it."""
