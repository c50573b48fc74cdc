"""One owner per run, and stores that can be read anywhere (issue 18, cases 3 and 4).

Claims are tested with two connections and injected clocks (no sleeps); the concurrency test starts two real
``mmclust reproduce`` processes on one store, released together, and counts what each computed.
"""

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from mmclust.cli import main
from mmclust.methods import KMeansBaseline
from mmclust.repro import store as store_mod
from mmclust.repro.runner import RunSpec, _ids, execute_run
from mmclust.repro.store import LEASE_S, Heartbeat, ResultStore, claim_is_stale, new_owner, owner_alive

from .test_runner import toy_refs

HERE = socket.gethostname()


def _ident(seed=0):
    spec = RunSpec("kmeans", "synthetic", variant="concat", seed=seed)
    ident = spec.identity()
    run_id, ident["config_id"] = _ids(ident)
    return run_id, ident


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def test_a_claimed_run_is_taken_for_every_other_connection(tmp_path):
    a, b = ResultStore(tmp_path / "r.db"), ResultStore(tmp_path / "r.db")
    run_id, ident = _ident()
    me, other = new_owner(), new_owner()
    assert a.claim(run_id, ident, me)
    assert not b.claim(run_id, ident, other)  # the owner is this very process: alive
    row = b.get(run_id)
    assert (row["status"], row["owner"]) == ("running", me) and row["heartbeat_at"] is not None


def test_a_dead_owner_on_this_host_is_taken_over_at_once(tmp_path):
    """What a rerun after SIGKILL meets: a fresh heartbeat, but its process is gone."""
    store = ResultStore(tmp_path / "r.db")
    run_id, ident = _ident()
    ghost = f"{HERE}:{_dead_pid()}:feedbeef"
    assert store.claim(run_id, ident, ghost, now=1000.0)
    assert owner_alive(ghost) is False
    assert store.claim(run_id, ident, new_owner(), now=1001.0)


def test_a_remote_owner_is_taken_over_only_after_its_lease(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    run_id, ident = _ident()
    remote = "some-other-host:4242:cafe"
    assert store.claim(run_id, ident, remote, now=1000.0)
    assert owner_alive(remote) is None  # another host: only the heartbeat can tell
    assert not store.claim(run_id, ident, new_owner(), now=1000.0 + LEASE_S)
    assert store.claim(run_id, ident, new_owner(), now=1000.0 + LEASE_S + 1)


def test_heartbeat_keeps_a_claim_and_a_taken_over_owner_writes_nothing(tmp_path):
    path = tmp_path / "r.db"
    store = ResultStore(path)
    run_id, ident = _ident()
    remote = "some-other-host:4242:cafe"
    assert store.claim(run_id, ident, remote, now=1000.0)
    assert store.heartbeat(run_id, remote, now=1000.0 + LEASE_S)  # a sign of life renews the lease
    assert not store.claim(run_id, ident, new_owner(), now=1000.0 + LEASE_S + 1)
    successor = new_owner()
    assert store.claim(run_id, ident, successor, now=1000.0 + 2 * LEASE_S + 1)
    assert not store.heartbeat(run_id, remote)  # no longer its run
    assert store.finish(run_id, status="done", metrics={"acc": 0.1}, owner=remote) is False
    assert store.get(run_id)["status"] == "running" and store.get(run_id)["owner"] == successor
    assert store.finish(run_id, status="done", metrics={"acc": 0.9}, owner=successor)
    assert store.get(run_id)["metrics"] == {"acc": 0.9}
    assert not store.claim(run_id, ident, new_owner())  # done: never claimed again
    assert store.claim(run_id, ident, new_owner(), retake_done=True)  # unless forced


def test_heartbeat_thread_beats_with_its_own_connection(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    run_id, ident = _ident()
    owner = new_owner()
    store.claim(run_id, ident, owner, now=5.0)
    beat = Heartbeat(tmp_path / "r.db", run_id, owner)
    assert beat.beat() and store.get(run_id)["heartbeat_at"] > 5.0
    with beat:  # starts and stops the thread cleanly
        pass
    assert not beat._thread.is_alive()


def test_failed_and_ownerless_running_rows_are_claimable(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    run_id, ident = _ident()
    store.start(run_id, ident)  # a row written before claims existed: no owner, no heartbeat
    assert claim_is_stale(None, None, now=0.0)
    owner = new_owner()
    assert store.claim(run_id, ident, owner)
    store.finish(run_id, status="failed", error="kaput", owner=owner)
    assert store.claim(run_id, ident, new_owner())  # a retry of a failed run


def test_execute_run_skips_a_run_another_live_process_holds(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    spec = RunSpec("kmeans", "synthetic", variant="concat", seed=0)
    run_id, ident = _ident()
    holder = f"{HERE}:{os.getppid()}:0"  # the parent process: alive for the whole test
    assert store.claim(run_id, ident, holder)
    res = execute_run(spec, store=store)
    assert res["status"] == "taken" and res["owner"] == holder and res["metrics"] is None
    assert store.get(run_id)["status"] == "running"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CUDA is available here: device 'cuda' is valid")
def test_execute_run_refuses_an_absent_device_before_any_row(tmp_path):
    from mmclust.data import DataError

    store = ResultStore(tmp_path / "r.db")
    with pytest.raises(DataError, match="CUDA is not available"):
        execute_run(RunSpec("kmeans", "synthetic", variant="concat", device="cuda"), store=store)
    assert store.query() == []  # no row left `running` forever


class _TakenOverMidFit(KMeansBaseline):
    db = None

    def fit(self, ds, y=None):
        with sqlite3.connect(self.db) as conn:  # the successor's claim, made while this fit runs
            conn.execute("UPDATE runs SET owner='successor-host:1:x', heartbeat_at=0 WHERE status='running'")
        return super().fit(ds)


def test_a_run_taken_over_mid_fit_leaves_its_successor_row_alone(tmp_path, monkeypatch):
    """A slow owner presumed dead (heartbeat lost) finishes after a successor took its run: it writes nothing."""
    from mmclust.methods import METHODS

    db = tmp_path / "r.db"
    monkeypatch.setattr(_TakenOverMidFit, "db", db)
    monkeypatch.setitem(METHODS, "kmeans", _TakenOverMidFit)
    store = ResultStore(db)
    res = execute_run(RunSpec("kmeans", "synthetic", variant="concat"), store=store)
    assert res["status"] == "taken" and res["owner"] == "successor-host:1:x"
    (row,) = store.query()
    assert row["status"] == "running" and row["metrics"] is None


_RELEASED = textwrap.dedent("""
    import sys
    from mmclust.cli import main
    import mmclust.methods, mmclust.repro.runner  # the slow imports happen before the start line
    sys.stdin.readline()
    sys.exit(main(sys.argv[1:]))
""")


def test_two_reproduce_processes_on_one_store_compute_each_run_once(tmp_path):
    refs = toy_refs(tmp_path, rates=(0.1, 0.3, 0.5, 0.7), claim=False)
    db = tmp_path / "r.db"
    ResultStore(db).close()  # the schema exists before both start, as after any earlier sweep
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    # --jobs 1: each process computes its runs itself, so every run's owner is one of the two (checked below)
    argv = ["reproduce", str(refs), "--runs", "10", "--db", str(db), "--no-report", "--quiet", "--jobs", "1"]
    procs = [subprocess.Popen([sys.executable, "-c", _RELEASED, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path) for _ in range(2)]
    for p in procs:  # both are ready (imports done) and wait for this line: they start together
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    done = []
    for out, _ in outs:
        m = re.search(r"(\d+) runs done, (\d+) already stored, (\d+) failed", out)
        assert m, out
        done.append(int(m.group(1)))
        assert int(m.group(3)) == 0
    assert sum(done) == 40, f"each process computed {done} of 40 runs: some were computed twice"
    rows = ResultStore(db).query()
    assert len(rows) == 40 and all(r["status"] == "done" for r in rows)
    assert {r["owner"].rsplit(":", 2)[1] for r in rows} <= {str(p.pid) for p in procs}


# -- read-only stores --------------------------------------------------------------------------------------
def _store_with_a_run(tmp_path):
    db = tmp_path / "ro" / "r.db"
    db.parent.mkdir()
    store = ResultStore(db)
    execute_run(RunSpec("kmeans", "synthetic", variant="concat", seed=0), store=store)
    store.close()
    return db


def test_a_readonly_store_reads_and_refuses_writes(tmp_path):
    db = _store_with_a_run(tmp_path)
    before = db.read_bytes()
    ro = ResultStore(db, readonly=True)
    assert [r["status"] for r in ro.query()] == ["done"]
    run_id, ident = _ident(seed=1)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.claim(run_id, ident, new_owner())
    ro.close()
    assert db.read_bytes() == before


def _store_with_a_leftover_wal(tmp_path):
    """A store as a SIGKILLed writer leaves it: seed 0 merged into the file, seed 1 only in the ``-wal`` log
    (the files are copied while the writer is open, so nothing merges the log; no process holds the copy)."""
    work = tmp_path / "work" / "r.db"
    work.parent.mkdir()
    store = ResultStore(work)
    execute_run(RunSpec("kmeans", "synthetic", variant="concat", seed=0), store=store)
    store.close()  # the last connection merges the log into the file
    store = ResultStore(work)
    execute_run(RunSpec("kmeans", "synthetic", variant="concat", seed=1), store=store)
    db = tmp_path / "ro" / "r.db"
    db.parent.mkdir()
    for suffix in ("", "-wal", "-shm"):
        shutil.copy(f"{work}{suffix}", f"{db}{suffix}")
    store.close()
    return db


def _beside(db) -> dict:
    return {p.name: p.read_bytes() for p in sorted(db.parent.iterdir()) if not p.name.endswith("-shm")}


def test_readers_create_and_change_no_file_beside_a_closed_store(tmp_path, monkeypatch, capsys):
    """A ``mode=ro`` reader of a WAL store would leave ``-wal`` / ``-shm`` files (owned by the reader) beside it."""
    db = _store_with_a_run(tmp_path)
    before = {p.name: p.read_bytes() for p in db.parent.iterdir()}
    monkeypatch.chdir(tmp_path)
    toy_refs(tmp_path, rates=(0.1,), claim=False)
    assert main(["results", "--db", str(db)]) == 0
    assert main(["report", "toy.toml", "--db", str(db), "--no-plots"]) == 0
    assert "kmeans" in (tmp_path / "reports" / "toy.md").read_text()
    assert {p.name: p.read_bytes() for p in db.parent.iterdir()} == before


def test_readers_see_the_runs_in_a_leftover_write_ahead_log(tmp_path, monkeypatch, capsys):
    db = _store_with_a_leftover_wal(tmp_path)
    before = _beside(db)
    ro = ResultStore(db, readonly=True)
    assert sorted(r["seed"] for r in ro.query()) == [0, 1]
    ro.close()
    assert _beside(db) == before  # neither merged nor removed: a reader writes nothing (the -shm index aside)


def test_readers_fall_back_to_immutable_where_sqlite_cannot_open_read_only(tmp_path, monkeypatch, capsys):
    """As an unprivileged user in a read-only folder, ``mode=ro`` on a WAL store with a ``-wal`` but no usable
    ``-shm`` fails ("attempt to write a readonly database"); tests run as root here, where chmod stops nothing,
    so that failure is injected and the fallback is exercised through the real commands."""
    db = _store_with_a_leftover_wal(tmp_path)
    real_connect = sqlite3.connect

    def connect(target, *args, **kwargs):
        if "mode=ro" in str(target):
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real_connect(target, *args, **kwargs)

    monkeypatch.setattr(store_mod.sqlite3, "connect", connect)
    monkeypatch.chdir(tmp_path)
    before = _beside(db)
    with pytest.warns(UserWarning, match="read without its write-ahead log r.db-wal"):
        ro = ResultStore(db, readonly=True)
    assert [r["seed"] for r in ro.query()] == [0]  # what the file holds; the log's run is said to be missing
    ro.close()
    assert main(["results", "--db", str(db)]) == 0
    assert "synthetic" in capsys.readouterr().out
    toy_refs(tmp_path, rates=(0.1,), claim=False)
    assert main(["report", "toy.toml", "--db", str(db), "--no-plots"]) == 0
    assert "kmeans" in (tmp_path / "reports" / "toy.md").read_text()
    assert _beside(db) == before  # nothing made or changed beside it


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: chmod does not stop root from writing, so the folder would not be read-only")
def test_results_and_report_read_a_store_in_a_read_only_folder(tmp_path, monkeypatch, capsys):
    db = _store_with_a_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    toy_refs(tmp_path, rates=(0.1,), claim=False)
    db.parent.chmod(0o555)
    try:
        assert main(["results", "--db", str(db)]) == 0
        assert main(["report", "toy.toml", "--db", str(db), "--no-plots"]) == 0
    finally:
        db.parent.chmod(0o755)


def test_a_store_wholly_in_an_unreadable_log_says_so(tmp_path, monkeypatch):
    """A writer killed before its first merge, read where ``mode=ro`` fails: a message naming the log, not
    SQLite's "no such table"."""
    work = tmp_path / "work" / "r.db"
    work.parent.mkdir()
    writer = ResultStore(work)  # open: the schema is in the log only
    db = tmp_path / "ro" / "r.db"
    db.parent.mkdir()
    for suffix in ("", "-wal", "-shm"):
        shutil.copy(f"{work}{suffix}", f"{db}{suffix}")
    writer.close()
    real_connect = sqlite3.connect
    monkeypatch.setattr(store_mod.sqlite3, "connect", lambda target, *a, **k: (_ for _ in ()).throw(
        sqlite3.OperationalError("attempt to write a readonly database")) if "mode=ro" in str(target) else real_connect(target, *a, **k))
    with pytest.warns(UserWarning), pytest.raises(sqlite3.OperationalError, match="all in the write-ahead log r.db-wal"):
        ResultStore(db, readonly=True)


class _Ticks:
    """A stop event whose wait returns False ``n`` times (n intervals pass), then True: the loop, without sleeps."""

    def __init__(self, n):
        self.n = n

    def wait(self, _interval):
        self.n -= 1
        return self.n < 0


def test_the_heartbeat_outlives_an_error_of_one_beat(tmp_path, monkeypatch):
    """One beat failing (any error, not only SQLite's) must not end the thread: a live run would lose its claim."""
    beat = Heartbeat(tmp_path / "r.db", "run", "owner")
    outcomes = [OSError("disk hiccup"), sqlite3.OperationalError("database is locked"), True]
    calls = []

    def one_beat():
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(beat, "beat", one_beat)
    beat._stop = _Ticks(3)
    beat._loop()
    assert len(calls) == 3


def test_a_killed_but_unreaped_owner_counts_as_gone():
    """A SIGKILLed worker its parent has not reaped yet is a zombie: kill(pid, 0) still succeeds, yet it computes nothing."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert owner_alive(f"{HERE}:{proc.pid}:x") is True
        proc.kill()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, left unreaped: a zombie
        assert owner_alive(f"{HERE}:{proc.pid}:x") is False
    finally:
        proc.wait()
