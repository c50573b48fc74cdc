"""SQLite result store: one row per run, written in one transaction, keyed by the run's identity hash.

WAL mode lets a report read while a sweep writes; the primary key on ``run_id`` makes a re-submitted
run a no-op for every engine. A run is first inserted as ``running``; it becomes ``done`` or
``failed`` in a single UPDATE, so a killed process leaves at most a ``running`` row, which a resumed
sweep re-runs (it never counts as a result).

One owner per run: :meth:`ResultStore.claim` takes a run in one ``BEGIN IMMEDIATE`` transaction (SQLite's
single writer lock makes "look, then take" atomic), recording the owner (``host:pid:token``) and a heartbeat
that :class:`Heartbeat` refreshes while the run computes. Another process (a second sweep, a joblib or Dask
worker) skips a run whose owner is alive and takes over a stale claim: owner gone (a dead pid on this host) or
heartbeat older than the lease (any host). So a SIGKILLed sweep's run is taken over at once by the next sweep
on the same machine, and a vanished remote worker's after :data:`LEASE_S`.

Readers (``results``, ``report``) open the store read-only (``ResultStore(path, readonly=True)``) and create no
file beside it: ``immutable=1`` when no ``-wal`` is there (the last writer merged its log), else SQLite URI
``mode=ro`` to read the log, falling back to ``immutable=1`` where the folder cannot hold WAL's ``-shm`` file; so a
store in a read-only folder or on a read-only medium can still be read; only writers set WAL mode and upgrade the schema.

``config_id`` (the run's identity without its seed) groups the runs one verdict may average; ``code_version``
is the fingerprint of the code that computed the run. Stores written before these columns existed are
upgraded in place on opening (their old rows have neither, so no verdict ever uses them).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
import warnings
from pathlib import Path

__all__ = ["ResultStore", "Heartbeat", "new_owner", "owner_alive", "LEASE_S"]

# A claim whose heartbeat is older than this is stale (its owner is presumed gone). Heartbeats come every
# LEASE_S / 10, so a live owner misses nine in a row before anyone may take its run over.
LEASE_S = 600.0

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
    failures      INTEGER, -- failed attempts of this run so far (a retry that succeeds keeps its history)
    owner         TEXT,    -- host:pid:token of the process that claimed the run
    heartbeat_at  REAL     -- last sign of life of that owner (seconds since the epoch)
);
CREATE INDEX IF NOT EXISTS runs_cell ON runs (method, variant, dataset, protocol, missing_rate);
"""
# columns added after the first release: (name, SQL type), added to older stores on opening
_ADDED_COLUMNS = (("split", "TEXT"), ("config_id", "TEXT"), ("code_version", "TEXT"), ("failures", "INTEGER"),
                  ("owner", "TEXT"), ("heartbeat_at", "REAL"))
_FILTERS = ("method", "variant", "dataset", "protocol", "missing_rate", "seed", "status", "split", "config_id")

_JSON_COLUMNS = ("overrides", "params", "metrics", "history", "environment")


class ResultStore:
    """A results database at ``path`` (created on first use); ``readonly`` opens an existing one for reading only."""

    def __init__(self, path: str | Path = "results.db", readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._conn = None
        self._connect()
        if readonly:
            return
        self._conn.executescript(_SCHEMA)
        have = {r["name"] for r in self._conn.execute("PRAGMA table_info(runs)").fetchall()}
        for name, kind in _ADDED_COLUMNS:
            if name not in have:
                self._conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
        self._conn.execute("CREATE INDEX IF NOT EXISTS runs_config ON runs (config_id)")

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.readonly:
                conn = _open_readonly(self.path)
            else:
                conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            self._conn = conn
        return _Tx(self._conn, "BEGIN" if self.readonly else "BEGIN IMMEDIATE")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __getstate__(self):  # picklable for engines that ship the store to workers
        return {"path": self.path, "readonly": self.readonly}

    def __setstate__(self, state):
        self.path = state["path"]
        self.readonly = state.get("readonly", False)
        self._conn = None

    # -- writes ----------------------------------------------------------------------------------
    def start(self, run_id: str, identity: dict) -> None:
        """Insert (or reset a stale) ``running`` row with no owner. A ``done`` row is never overwritten here.

        Kept for callers that own a store alone; concurrent writers use :meth:`claim`."""
        with self._connect() as conn:
            self._upsert_running(conn, run_id, identity, owner=None, now=time.time(), only_unfinished=True)

    def claim(self, run_id: str, identity: dict, owner: str, *, now: float | None = None, lease_s: float = LEASE_S,
              retake_done: bool = False) -> bool:
        """Take ``run_id`` for ``owner`` unless another live owner holds it (or it is done); True when taken.

        One ``BEGIN IMMEDIATE`` transaction: no other connection can write between the look and the take.
        Claimable: no row, a ``failed`` row (a retry), a ``running`` row whose claim is stale (see
        :func:`claim_is_stale`), and with ``retake_done`` a ``done`` row.
        """
        now = time.time() if now is None else now
        with self._connect() as conn:
            row = conn.execute("SELECT status, owner, heartbeat_at FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is not None:
                if row["status"] == "done" and not retake_done:
                    return False
                if row["status"] == "running" and not claim_is_stale(row["owner"], row["heartbeat_at"], now, lease_s):
                    return False
            self._upsert_running(conn, run_id, identity, owner=owner, now=now, only_unfinished=False)
            return True

    def heartbeat(self, run_id: str, owner: str, now: float | None = None) -> bool:
        """Refresh the owner's sign of life; False when the run is no longer this owner's (taken over or finished)."""
        with self._connect() as conn:
            cur = conn.execute("UPDATE runs SET heartbeat_at=? WHERE run_id=? AND owner=? AND status='running'",
                               (time.time() if now is None else now, run_id, owner))
            return cur.rowcount == 1

    @staticmethod
    def _upsert_running(conn, run_id, identity, owner, now, only_unfinished) -> None:
        row = {c: identity.get(c) for c in ("method", "variant", "dataset", "protocol", "missing_rate", "seed", "data_sha256",
                                            "split", "config_id", "code")}
        conn.execute(
            """INSERT INTO runs (run_id, method, variant, dataset, protocol, missing_rate, seed, overrides, params,
                                 data_sha256, status, started_at, split, config_id, code_version, owner, heartbeat_at)
               VALUES (?,?,?,?,?,?,?,?,?,?, 'running', ?,?,?,?,?,?)
               ON CONFLICT(run_id) DO UPDATE SET status='running', started_at=excluded.started_at, error=NULL,
                   failed_epoch=NULL, owner=excluded.owner, heartbeat_at=excluded.heartbeat_at"""
            + (" WHERE runs.status != 'done'" if only_unfinished else ""),
            (run_id, row["method"], row["variant"], row["dataset"], row["protocol"], row["missing_rate"], row["seed"],
             json.dumps(identity.get("overrides", {}), sort_keys=True), json.dumps(identity.get("params", {}), sort_keys=True, default=str),
             row["data_sha256"], now, row["split"], row["config_id"], row["code"], owner, None if owner is None else now),
        )

    def finish(self, run_id: str, *, status: str, metrics=None, history=None, wall_time_s=None, peak_cpu_mb=None,
               peak_cuda_mb=None, device=None, environment=None, git_sha=None, error=None, failed_epoch=None,
               owner: str | None = None) -> bool:
        """Write the outcome of a run in one UPDATE (one transaction).

        With ``owner``, only while the run is still that owner's: returns False (and writes nothing) when another
        process took the claim over, so a run presumed dead never overwrites its successor's result."""
        if status not in ("done", "failed"):
            raise ValueError(f"finish: status must be 'done' or 'failed', got {status!r}")
        with self._connect() as conn:
            cur = conn.execute(
                """UPDATE runs SET status=?, metrics=?, history=?, wall_time_s=?, peak_cpu_mb=?, peak_cuda_mb=?, device=?,
                       environment=?, git_sha=?, error=?, failed_epoch=?, finished_at=?,
                       failures = COALESCE(failures, 0) + (CASE WHEN ? = 'failed' THEN 1 ELSE 0 END)
                   WHERE run_id=? AND (? IS NULL OR owner=?)""",
                (status, json.dumps(metrics) if metrics is not None else None,
                 json.dumps(history) if history is not None else None, wall_time_s, peak_cpu_mb, peak_cuda_mb, device,
                 json.dumps(environment or {}), git_sha, error, failed_epoch, time.time(), status, run_id, owner, owner),
            )
            if cur.rowcount == 1:
                return True
            if owner is not None and conn.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone():
                return False
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
    """``with`` block = one transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error; plain BEGIN to read)."""

    def __init__(self, conn, begin: str = "BEGIN IMMEDIATE"):
        self.conn = conn
        self.begin = begin

    def __enter__(self):
        self.conn.execute(self.begin)
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


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection that creates no file beside the store.

    No ``-wal`` beside the file: the last writer closed cleanly and merged its log, so the file holds every run;
    it is read with ``immutable=1`` (a ``mode=ro`` connection to a WAL store would create ``-wal`` and ``-shm``
    files beside it, owned by the reader, which can then block a writer of another user). A ``-wal`` there: a
    writer is at work or was killed before merging its log, so the log must be read: ``mode=ro`` (SQLite's
    shared ``-shm`` index coordinates with that writer); where SQLite cannot use the ``-shm`` (a read-only
    folder), ``immutable=1``, which cannot see the unmerged log (a warning says so)."""
    if not path.is_file():
        raise FileNotFoundError(f"result store {path} does not exist")
    uri = path.resolve().as_uri()
    wal = path.with_name(path.name + "-wal")
    if not wal.exists():
        conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # SQLite opens lazily: fail here, not later
        return conn
    except sqlite3.OperationalError:
        pass
    if wal.is_file() and wal.stat().st_size > 0:
        warnings.warn(f"{path}: read without its write-ahead log {wal.name} (the folder is read-only, so SQLite cannot "
                      "merge it); runs written last may be missing", stacklevel=3)
    conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
    if conn.execute("SELECT count(*) FROM sqlite_master WHERE name='runs'").fetchone()[0] == 0 and wal.is_file():
        conn.close()  # every run is still in the log: say so, not "no such table"
        raise sqlite3.OperationalError(f"its runs are all in the write-ahead log {wal.name}, which SQLite cannot read in "
                                       "this read-only folder; copy the store with its -wal and -shm files to a writable one")
    return conn


# -- owners -----------------------------------------------------------------------------------------
def new_owner() -> str:
    """``host:pid:token``: the host and pid tell whether the owner lives; the token tells two claims of one
    process (threads of a Dask ``processes=False`` worker) apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_alive(owner: str | None) -> bool | None:
    """True / False for an owner on this host (its pid runs / is gone, a zombie counts as gone); None when
    the owner is on another host (only its heartbeat can tell) or unreadable."""
    try:
        host, pid, _ = (owner or "").rsplit(":", 2)
        pid = int(pid)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:  # a killed child its parent has not reaped yet still answers kill(pid, 0)
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def claim_is_stale(owner: str | None, heartbeat_at: float | None, now: float, lease_s: float = LEASE_S) -> bool:
    """A ``running`` row may be taken over: no owner or heartbeat (written before claims existed, or by
    :meth:`ResultStore.start`), an owner on this host whose process is gone, or a heartbeat older than the lease."""
    if owner is None or heartbeat_at is None:
        return True
    if owner_alive(owner) is False:
        return True
    return now - heartbeat_at > lease_s


class Heartbeat:
    """Refreshes a claimed run's heartbeat every ``interval`` seconds from a thread with its own connection.

    ``with Heartbeat(store_path, run_id, owner): fit()``. ``beat()`` is one refresh (tests call it directly)."""

    def __init__(self, path, run_id: str, owner: str, interval: float = LEASE_S / 10):
        self.path, self.run_id, self.owner, self.interval = Path(path), run_id, owner, interval
        self._stop = threading.Event()
        self._thread = None

    def beat(self) -> bool:
        store = ResultStore(self.path)  # its own connection: the fitting thread may hold the other one
        try:
            return store.heartbeat(self.run_id, self.owner)
        finally:
            store.close()

    def _loop(self):
        while not self._stop.wait(self.interval):
            try:
                if not self.beat():
                    return  # taken over or finished: nothing left to keep alive
            except Exception:  # noqa: BLE001 - a busy store, a full disk, a passing OSError: the next beat tries
                continue  # again, well within the lease; a heartbeat thread that died would let a live run be taken over

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{self.run_id[:8]}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()
        return False
