"""Published numbers as data: load and validate ``reference_results/<paper>.toml``.

Each file has a ``[meta]`` table, one ``[[result]]`` per published cell and ``[[claim]]`` entries for the
paper's qualitative statements. A malformed file fails loudly, naming the file and the entry.
The files ship inside the package, so an installed mmclust can check itself.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from ..data import DataError
from ..data.protocols import PROTOCOLS, parse_split
from ..metrics import METRICS, NMI_AVERAGES

__all__ = ["ReferenceCell", "Claim", "References", "load_references", "PAPERS", "KNOWN_METHODS", "ReferenceError",
           "run_plan", "cell_key"]

PAPERS = ("jecl", "cigit_c", "dmim", "dm2c", "mca")
# Methods a testable cell may name: the five papers plus the baselines the papers ran themselves.
KNOWN_METHODS = ("jecl", "cigit_c", "dmim", "dm2c", "mca", "kmeans", "dec")
_UNIT_SCALE = {"percent": 100.0, "fraction": 1.0}

_RESULT_REQUIRED = ("table", "method", "variant", "dataset", "protocol", "metric")
_RESULT_OPTIONAL = ("missing_rate", "printed", "value", "std", "runs", "reference_only", "uncertain", "nmi_average",
                    "stand_in", "also_on", "note", "cited_from", "split")
_CLAIM_REQUIRED = ("id", "kind", "metric", "tolerance", "protocol", "datasets", "text", "source")
_CLAIM_OPTIONAL = ("missing_rates", "stand_ins", "better", "worse", "subject", "split")
_CLAIM_KINDS = ("greater", "decreasing")
_META_KEYS = ("paper", "title", "unit", "direction", "notes", "beside")


class ReferenceError(DataError):
    """A reference file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class ReferenceCell:
    paper: str
    table: str
    method: str
    variant: str
    dataset: str
    protocol: str
    metric: str
    missing_rate: float | None = None
    printed: str | None = None
    value: float | None = None  # None only for an unreadable cell (uncertain = true)
    std: float | None = None
    runs: int | None = None
    reference_only: bool = False
    uncertain: bool = False
    nmi_average: str | None = None
    stand_in: str | None = None
    also_on: tuple = ()  # other readings of the paper's data (e.g. BDGP's first 1000 columns): findings, no verdict
    note: str | None = None
    cited_from: str | None = None
    unit: str = "fraction"
    split: str | None = None  # the paper's held-out protocol, canonical text (mmclust.data.protocols.parse_split)

    @property
    def resolution(self) -> float:
        """Half the last printed digit, as a fraction: a band is never narrower than this."""
        if not self.printed or "." not in self.printed:
            return 0.0
        decimals = len(self.printed.split(".")[1])
        return 0.5 * 10.0**-decimals / _UNIT_SCALE[self.unit]

    @property
    def config(self) -> tuple:
        return (self.method, self.variant, self.dataset, self.protocol, self.missing_rate, self.split)

    @property
    def store_metric(self) -> str:
        """Key of the stored metrics dict that matches this cell (the paper's NMI normaliser)."""
        if self.metric == "nmi" and self.nmi_average == "geometric":
            return "nmi_geometric"
        return self.metric


@dataclass(frozen=True)
class Claim:
    paper: str
    id: str
    kind: str
    metric: str
    tolerance: float
    protocol: str
    datasets: tuple
    text: str
    source: str
    missing_rates: tuple = ()
    stand_ins: tuple = ()
    better: dict | None = None
    worse: tuple = ()
    subject: dict | None = None
    split: str | None = None  # held-out protocol on data sets where no cell gives one (canonical text)

    def configs(self, dataset: str, split: str | None = None) -> list[tuple]:
        """The (method, variant, dataset, protocol, missing_rate, split) runs the claim needs on ``dataset``."""
        who = ([self.better] + list(self.worse)) if self.kind == "greater" else [self.subject]
        rates = list(self.missing_rates) or [None]
        return [(w["method"], w["variant"], dataset, self.protocol, r, split) for w in who for r in rates]


@dataclass
class References:
    paper: str
    path: Path
    meta: dict
    cells: list = field(default_factory=list)
    claims: list = field(default_factory=list)

    @property
    def beside(self) -> tuple:
        """Variants of the paper's own method (e.g. ``official_code``: the authors' code's settings) run next to
        each of its cells and claims and shown as findings, never verdicts."""
        return tuple(self.meta.get("beside", ()))

    def testable(self) -> list[ReferenceCell]:
        return [c for c in self.cells if not c.reference_only]

    def find(self, **where) -> list[ReferenceCell]:
        return [c for c in self.cells if all(getattr(c, k) == v for k, v in where.items())]

    def split_for(self, dataset: str, claim: Claim | None = None) -> str | None:
        """The held-out protocol the paper uses on ``dataset`` (or on the data it stands in for / is a reading
        of); claims evaluated there use it too. Where no cell names ``dataset``, a claim's own ``split`` applies
        (e.g. a second stand-in read under the paper's train/test protocol). ``"dataset"`` when that data set
        ships its own split."""
        from ..data.registry import get_spec

        named = [c for c in self.testable() if dataset == c.dataset or dataset == c.stand_in or dataset in c.also_on]
        splits = {c.split for c in named}
        if len(splits) > 1:
            raise ReferenceError(f"{self.path.name}: cells on {dataset!r} disagree on the split: {sorted(map(str, splits))}")
        split = next(iter(splits), None) if named else (claim.split if claim is not None else None)
        return "dataset" if split is not None and get_spec(dataset).fixed_split else split


def cell_key(c: ReferenceCell) -> tuple:
    return (c.table, c.method, c.variant, c.dataset, c.protocol, c.missing_rate, c.metric)


def _reference_path(paper: str) -> Path:
    if paper not in PAPERS:
        raise ReferenceError(f"unknown paper {paper!r}; valid: {', '.join(PAPERS)}")
    # a source tree run with PYTHONPATH=src reads its own files at the top level first: an editable install of
    # another checkout in the same environment would otherwise serve that checkout's (maybe newer) files
    candidates = [Path(__file__).resolve().parents[3] / "reference_results" / f"{paper}.toml"]
    try:
        candidates.append(resources.files("mmclust.reference_results") / f"{paper}.toml")
    except ModuleNotFoundError:
        pass
    for path in candidates:
        if path.is_file():
            return Path(str(path))
    return Path(str(candidates[0]))


def load_references(paper_or_path: str | Path) -> References:
    """Load and validate one paper's file (by paper key, or a path to a TOML file)."""
    from ..data.registry import REGISTRY

    path = Path(paper_or_path) if str(paper_or_path).endswith(".toml") else _reference_path(str(paper_or_path))
    where = path.name
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ReferenceError(f"{where}: reference file not found at {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ReferenceError(f"{where}: not valid TOML ({err})") from err
    extra = set(raw) - {"meta", "result", "claim"}
    if extra:
        raise ReferenceError(f"{where}: unknown top-level key(s) {sorted(extra)}")
    meta = raw.get("meta") or {}
    bad_meta = set(meta) - set(_META_KEYS)
    if bad_meta or not {"paper", "unit", "direction"} <= set(meta):
        raise ReferenceError(f"{where}: [meta] needs paper, unit, direction (and may have title); got {sorted(meta)}")
    if meta["unit"] not in _UNIT_SCALE:
        raise ReferenceError(f"{where}: [meta] unit must be one of {list(_UNIT_SCALE)}, got {meta['unit']!r}")
    if "notes" in meta and (not isinstance(meta["notes"], list) or not all(isinstance(n, str) for n in meta["notes"])):
        raise ReferenceError(f"{where}: [meta] notes must be a list of strings")
    beside = meta.get("beside", [])
    if not isinstance(beside, list) or not all(isinstance(v, str) and v for v in beside):
        raise ReferenceError(f"{where}: [meta] beside must be a list of variant names of {meta['paper']!r}'s own method")
    if meta["direction"] != "higher":
        raise ReferenceError(f"{where}: [meta] direction must be 'higher' (all clustering metrics here), got {meta['direction']!r}")
    paper = meta["paper"]
    if not isinstance(paper, str) or not paper.isidentifier():
        # it names the report's files: a path ("../../x") would write outside the output folder
        raise ReferenceError(f"{where}: [meta] paper must be a plain identifier (letters, digits, _), got {paper!r}")
    refs = References(paper=paper, path=path, meta=meta)
    seen = {}
    for i, entry in enumerate(raw.get("result", [])):
        label = f"{where}: [[result]] #{i + 1} ({entry.get('method')}/{entry.get('variant')}/{entry.get('dataset')}/{entry.get('metric')})"
        _check_keys(entry, _RESULT_REQUIRED, _RESULT_OPTIONAL, label)
        fields = _entry_fields(entry, label)
        cell = ReferenceCell(paper=paper, unit=meta["unit"], **fields)
        _validate_cell(cell, label, REGISTRY)
        key = cell_key(cell)
        if key in seen:
            raise ReferenceError(f"{label}: duplicate cell, same as [[result]] #{seen[key] + 1}")
        seen[key] = i
        refs.cells.append(cell)
    ids = set()
    for i, entry in enumerate(raw.get("claim", [])):
        label = f"{where}: [[claim]] #{i + 1} ({entry.get('id')})"
        _check_keys(entry, _CLAIM_REQUIRED, _CLAIM_OPTIONAL, label)
        fields = _entry_fields(entry, label)
        claim = Claim(paper=paper, **fields)
        _validate_claim(claim, label, REGISTRY)
        if claim.id in ids:
            raise ReferenceError(f"{label}: duplicate claim id")
        ids.add(claim.id)
        refs.claims.append(claim)
    if not refs.cells:
        raise ReferenceError(f"{where}: no [[result]] entries")
    for d in {d for c in refs.testable() for d in (c.dataset, c.stand_in, *c.also_on) if d}:
        refs.split_for(d)  # cells on one data set must agree on its split
    return refs


def _entry_fields(entry: dict, label: str) -> dict:
    """An entry's fields with lists as tuples and its ``split`` in canonical text (an error names the entry)."""
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in entry.items()}
    if "split" in fields:
        try:
            fields["split"] = parse_split(fields["split"])
        except DataError as err:
            raise ReferenceError(f"{label}: {err}") from None
    return fields


def _check_keys(entry: dict, required, optional, label: str) -> None:
    unknown = set(entry) - set(required) - set(optional)
    if unknown:
        raise ReferenceError(f"{label}: unknown key(s) {sorted(unknown)}")
    missing = [k for k in required if k not in entry]
    if missing:
        raise ReferenceError(f"{label}: missing key(s) {missing}")


def _validate_cell(c: ReferenceCell, label: str, registry: dict) -> None:
    if c.metric not in METRICS:
        raise ReferenceError(f"{label}: unknown metric {c.metric!r}; valid: {', '.join(METRICS)}")
    if c.protocol not in PROTOCOLS:
        raise ReferenceError(f"{label}: unknown protocol {c.protocol!r}; valid: {', '.join(PROTOCOLS)}")
    if (c.protocol == "incomplete") != (c.missing_rate is not None):
        raise ReferenceError(f"{label}: missing_rate is required with protocol 'incomplete' and only there")
    if c.missing_rate is not None and not 0.0 <= c.missing_rate <= 1.0:
        raise ReferenceError(f"{label}: missing_rate {c.missing_rate} outside [0, 1]")
    if c.value is None:
        if not c.uncertain or not c.note:
            raise ReferenceError(f"{label}: no value; only an uncertain cell with a note saying why may omit it")
    else:
        if not isinstance(c.value, (int, float)) or not math.isfinite(c.value) or not 0.0 <= c.value <= 1.0:
            raise ReferenceError(f"{label}: value {c.value!r} outside [0, 1] (store fractions, not percent)")
        if c.printed is not None:
            try:
                expected = float(c.printed) / _UNIT_SCALE[c.unit]
            except ValueError:
                raise ReferenceError(f"{label}: printed {c.printed!r} is not a number") from None
            if abs(expected - c.value) > 1e-9:
                raise ReferenceError(f"{label}: value {c.value} does not match printed {c.printed} ({c.unit})")
    if c.std is not None and not (0.0 <= c.std <= 1.0):
        raise ReferenceError(f"{label}: std {c.std} outside [0, 1]")
    if c.runs is not None and (not isinstance(c.runs, int) or c.runs < 1):
        raise ReferenceError(f"{label}: runs must be a positive integer")
    if c.nmi_average is not None and c.nmi_average not in NMI_AVERAGES:
        raise ReferenceError(f"{label}: nmi_average must be one of {NMI_AVERAGES}")
    if c.metric == "nmi" and c.nmi_average is None and not c.reference_only:
        raise ReferenceError(f"{label}: an NMI cell needs nmi_average (the normaliser the paper used)")
    if not c.reference_only:
        if c.method not in KNOWN_METHODS:
            raise ReferenceError(f"{label}: unknown method {c.method!r}; testable cells name one of {', '.join(KNOWN_METHODS)} "
                                 "(mark other papers' baselines reference_only = true)")
        if c.dataset not in registry:
            raise ReferenceError(f"{label}: unknown dataset {c.dataset!r}; add it to the data registry")
        if c.stand_in is not None and c.stand_in not in registry:
            raise ReferenceError(f"{label}: unknown stand_in dataset {c.stand_in!r}")
        for d in c.also_on:
            if d not in registry:
                raise ReferenceError(f"{label}: unknown also_on dataset {d!r}")


def _validate_claim(c: Claim, label: str, registry: dict) -> None:
    if c.kind not in _CLAIM_KINDS:
        raise ReferenceError(f"{label}: kind must be one of {_CLAIM_KINDS}, got {c.kind!r}")
    if c.metric not in METRICS:
        raise ReferenceError(f"{label}: unknown metric {c.metric!r}")
    if not 0.0 <= c.tolerance < 1.0:
        raise ReferenceError(f"{label}: tolerance must be in [0, 1)")
    if c.kind == "greater" and (not c.better or not c.worse):
        raise ReferenceError(f"{label}: a 'greater' claim needs better and worse")
    if c.kind == "decreasing" and (not c.subject or len(c.missing_rates) < 2):
        raise ReferenceError(f"{label}: a 'decreasing' claim needs subject and at least two missing_rates")
    for who in ([c.better] if c.better else []) + list(c.worse) + ([c.subject] if c.subject else []):
        if set(who) != {"method", "variant"} or who["method"] not in KNOWN_METHODS:
            raise ReferenceError(f"{label}: compared entries are {{method, variant}} with a known method, got {who}")
    for d in tuple(c.datasets) + tuple(c.stand_ins):
        if d not in registry:
            raise ReferenceError(f"{label}: unknown dataset {d!r}")


def run_plan(refs: References, table: str | None = None, datasets=None, findings: bool = False) -> tuple[list[dict], list[dict]]:
    """Which configurations to run for a paper's testable cells and claims, and which cannot run.

    Returns ``(plan, not_run)``: ``plan`` items are dicts with method, variant, dataset (the paper's),
    run_dataset (what actually runs), protocol, missing_rate, split, verdict_kind (``test``,
    ``features_differ`` or ``finding``); ``not_run`` items say why (``data_absent`` naming the file,
    ``not_implemented``). Each cell's primary reading is always planned; with ``findings`` also its other
    readings (``also_on`` data, and all rows without the held-out split) and the ``[meta] beside`` variants of
    the paper's own method, which are findings, never verdicts.
    """
    from ..data.registry import get_spec, status
    from ..methods import METHODS

    if table is not None and table not in {c.table for c in refs.cells}:
        raise ReferenceError(f"{refs.path.name}: no table {table!r}; tables: {sorted({c.table for c in refs.cells})}")
    wanted = set(datasets) if datasets else None
    plan, not_run, seen, runs_seen = [], [], set(), set()

    def consider(method, variant, dataset, protocol, rate, split, stand_in, origin, reading_of=None, finding=False):
        key = (method, variant, dataset, protocol, rate, split)
        if key in seen:
            return
        seen.add(key)
        run_dataset, kind = None, None
        state = status(dataset)
        if state == "present":
            run_dataset, kind = dataset, "test"
        elif state != "corrupt" and stand_in and status(stand_in) == "present":  # a corrupt file is never replaced silently
            run_dataset, kind = stand_in, "features_differ"
        if finding and run_dataset is not None:
            kind = "finding"
        if wanted is not None and not ({dataset, run_dataset, reading_of} & wanted):
            return
        if run_dataset is not None and split is not None and get_spec(run_dataset).fixed_split:
            split = "dataset"  # a data set that ships its own split is read with it
        base = dict(method=method, variant=variant, dataset=dataset, protocol=protocol, missing_rate=rate, split=split,
                    origin=origin)
        if method not in METHODS:
            not_run.append({**base, "why": "not_implemented", "detail": f"method {method!r} is not implemented yet"})
        elif variant not in getattr(METHODS[method], "VARIANTS", {"full": {}}):
            not_run.append({**base, "why": "not_implemented", "detail": f"variant {variant!r} of {method!r} is not implemented"})
        elif run_dataset is None:
            spec = get_spec(dataset)
            corrupt = next((d for d in (dataset, stand_in) if d and status(d) == "corrupt"), None)
            if corrupt:
                bad = get_spec(corrupt)
                not_run.append({**base, "why": "data_corrupt", "data": corrupt, "file": bad.file, "detail":
                                f"{bad.file} in $MMCLUST_DATA is corrupt (sha256 mismatch): replace it with an intact copy of {bad.source}"})
            else:
                not_run.append({**base, "why": "data_absent", "data": dataset, "file": spec.file,
                                "detail": f"needs {spec.file} in $MMCLUST_DATA: {spec.how_to_supply or spec.source}"})
        elif (method, variant, run_dataset, protocol, rate, split) not in runs_seen:
            runs_seen.add((method, variant, run_dataset, protocol, rate, split))
            plan.append({**base, "run_dataset": run_dataset, "verdict_kind": kind})

    for c in refs.testable():
        if table is None or c.table == table:
            consider(*c.config, c.stand_in, f"table {c.table}")
            if findings:
                for alt in c.also_on:
                    consider(c.method, c.variant, alt, c.protocol, c.missing_rate, c.split, None,
                             f"table {c.table} (reading {alt})", reading_of=c.dataset, finding=True)
                if c.split is not None:
                    # a finding on the stand-in too: it must never take the primary reading's place
                    consider(c.method, c.variant, c.dataset, c.protocol, c.missing_rate, None, c.stand_in,
                             f"table {c.table} (all rows, no held-out split)", finding=True)
                if c.method == refs.paper:
                    for v in refs.beside:
                        consider(c.method, v, c.dataset, c.protocol, c.missing_rate, c.split, c.stand_in,
                                 f"table {c.table} (beside: variant {v})", finding=True)
    if table is None:
        for claim in refs.claims:
            for d in tuple(claim.datasets) + tuple(claim.stand_ins):
                if status(d) != "present":
                    continue
                for cfg in claim.configs(d, refs.split_for(d, claim)):
                    consider(*cfg, None, f"claim {claim.id}")
                    if findings and cfg[0] == refs.paper:
                        for v in refs.beside:
                            consider(cfg[0], v, *cfg[2:], None, f"claim {claim.id} (beside: variant {v})", finding=True)
    return plan, not_run
