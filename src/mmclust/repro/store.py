"""SQLite result store: one row per run, written in one transaction, keyed by the run's identity hash.

WAL mode lets a report read while a sweep writes; the primary key on ``run_id`` makes a re-submitted
run a no-op for every engine. A run is first inserted as ``running``; it becomes ``done`` or
``failed`` in a single UPDATE, so a killed process leaves at most a ``running`` row, which a resumed
sweep re-runs (it never counts as a result).

``config_id`` (the run's identity without its seed) groups the runs one verdict may average; ``code_version``
is the fingerprint of the code that computed the run. Stores written before these columns existed are
upgraded in place on opening (their old rows have neither, so no verdict ever uses them).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

__all__ = ["ResultStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    method        TEXT NOT NULL,
    variant       TEXT NOT NULL,
    dataset       TEXT NOT NULL,
    protocol      TEXT NOT NULL,
    missing_rate  REAL,
    seed          INTEGER NOT NULL,
    overrides     TEXT NOT NULL,
    params        TEXT NOT NULL,
    data_sha256   TEXT,
    status        TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    metrics       TEXT,
    history       TEXT,
    wall_time_s   REAL,
    peak_cpu_mb   REAL,
    peak_cuda_mb  REAL,
    device        TEXT,
    environment   TEXT,
    git_sha       TEXT,
    error         TEXT,
    failed_epoch  INTEGER,
    started_at    REAL,
    finished_at   REAL,
    split         TEXT,
    config_id     TEXT,
    code_version  TEXT,
    failures      INTEGER  -- failed attempts of this run so far (a retry that succeeds keeps its history)
);
CREATE INDEX IF NOT EXISTS runs_cell ON runs (method, variant, dataset, protocol, missing_rate);
"""
# columns added after the first release: (name, SQL type), added to older stores on opening
_ADDED_COLUMNS = (("split", "TEXT"), ("config_id", "TEXT"), ("code_version", "TEXT"), ("failures", "INTEGER"))
_FILTERS = ("method", "variant", "dataset", "protocol", "missing_rate", "seed", "status", "split", "config_id")

_JSON_COLUMNS = ("overrides", "params", "metrics", "history", "environment")


class ResultStore:
    """A results database at ``path`` (created on first use)."""

    def __init__(self, path: str | Path = "results.db"):
        self.path = Path(path)
        self._conn = None
        self._connect()
        self._conn.executescript(_SCHEMA)
        have = {r["name"] for r in self._conn.execute("PRAGMA table_info(runs)").fetchall()}
        for name, kind in _ADDED_COLUMNS:
            if name not in have:
                self._conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
        self._conn.execute("CREATE INDEX IF NOT EXISTS runs_config ON runs (config_id)")

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            self._conn = conn
        return _Tx(self._conn)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __getstate__(self):  # picklable for engines that ship the store to workers
        return {"path": self.path}

    def __setstate__(self, state):
        self.path = state["path"]
        self._conn = None

    # -- writes ----------------------------------------------------------------------------------
    def start(self, run_id: str, identity: dict) -> None:
        """Insert (or reset a stale) ``running`` row. A ``done`` row is never overwritten here."""
        row = {c: identity.get(c) for c in ("method", "variant", "dataset", "protocol", "missing_rate", "seed", "data_sha256",
                                            "split", "config_id", "code")}
        with self._connect() as conn:
            conn.execute(
                """INSERT INTO runs (run_id, method, variant, dataset, protocol, missing_rate, seed, overrides, params,
                                     data_sha256, status, started_at, split, config_id, code_version)
                   VALUES (?,?,?,?,?,?,?,?,?,?, 'running', ?,?,?,?)
                   ON CONFLICT(run_id) DO UPDATE SET status='running', started_at=excluded.started_at,
                       error=NULL, failed_epoch=NULL WHERE runs.status != 'done'""",
                (run_id, row["method"], row["variant"], row["dataset"], row["protocol"], row["missing_rate"], row["seed"],
                 json.dumps(identity.get("overrides", {}), sort_keys=True), json.dumps(identity.get("params", {}), sort_keys=True, default=str),
                 row["data_sha256"], time.time(), row["split"], row["config_id"], row["code"]),
            )

    def finish(self, run_id: str, *, status: str, metrics=None, history=None, wall_time_s=None, peak_cpu_mb=None,
               peak_cuda_mb=None, device=None, environment=None, git_sha=None, error=None, failed_epoch=None) -> None:
        """Write the outcome of a run in one UPDATE (one transaction)."""
        if status not in ("done", "failed"):
            raise ValueError(f"finish: status must be 'done' or 'failed', got {status!r}")
        with self._connect() as conn:
            cur = conn.execute(
                """UPDATE runs SET status=?, metrics=?, history=?, wall_time_s=?, peak_cpu_mb=?, peak_cuda_mb=?, device=?,
                       environment=?, git_sha=?, error=?, failed_epoch=?, finished_at=?,
                       failures = COALESCE(failures, 0) + (CASE WHEN ? = 'failed' THEN 1 ELSE 0 END) WHERE run_id=?""",
                (status, json.dumps(metrics) if metrics is not None else None,
                 json.dumps(history) if history is not None else None, wall_time_s, peak_cpu_mb, peak_cuda_mb, device,
                 json.dumps(environment or {}), git_sha, error, failed_epoch, time.time(), status, run_id),
            )
            if cur.rowcount != 1:
                raise KeyError(f"finish: no started run {run_id}")

    # -- reads -----------------------------------------------------------------------------------
    def status_of(self, run_id: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return None if row is None else row["status"]

    def get(self, run_id: str) -> dict | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return None if row is None else _decode(row)

    def query(self, **where) -> list[dict]:
        """Rows matching every given column (``None`` values are ignored), oldest first."""
        clauses, values = [], []
        for col, val in where.items():
            if val is None:
                continue
            if col not in _FILTERS:
                raise ValueError(f"query: cannot filter on {col!r}")
            if col == "missing_rate":
                clauses.append("abs(missing_rate - ?) < 1e-9")
            else:
                clauses.append(f"{col} = ?")
            values.append(val)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY started_at, run_id"
        with self._connect() as conn:
            return [_decode(r) for r in conn.execute(sql, values).fetchall()]


class _Tx:
    """``with`` block = one transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error)."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, *_):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _decode(row) -> dict:
    out = dict(row)
    for c in _JSON_COLUMNS:
        if out.get(c) is not None:
            out[c] = json.loads(out[c])
    return out
