"""One run at a time per database, and a run killed at any moment leaves the database as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import AS_OF, invoke, loan, query, table_snapshot, write_snapshot

from loanrules.store import connect, database_lock, ensure_schema

SLEEPING_PLUGIN = textwrap.dedent('''
    import os, pathlib, time
    from loanrules import Check, Pack, hookimpl

    def evaluate(ctx):
        # the run has written findings of earlier checks by now, inside its transaction
        pathlib.Path(os.environ["LOANRULES_TEST_MARKER"]).write_text("inside")
        time.sleep(60)
        return []

    @hookimpl
    def register_checks(register):
        register(Check(id="test.sleeps", title="sleeps", evaluate=evaluate))

    @hookimpl
    def register_packs(register):
        register(Pack(name="sleepy", version="1", title="s", members=["test.sleeps"]))
''')


@pytest.fixture
def snapshot(tmp_path):
    return write_snapshot(tmp_path / "s", loans=[loan(f"L{i}", outstanding_principal="100000.01") for i in range(50)])


def test_a_second_run_fails_clearly_while_the_database_is_locked(runner, snapshot, db_path):
    with database_lock(db_path):
        started = time.monotonic()
        result = invoke(runner, "run", snapshot, "--as-of", AS_OF, "--db", db_path, "--wait", "0.5")
        assert time.monotonic() - started >= 0.5  # it waited as asked
    assert result.exit_code == 4
    assert "is in use by loanrules pid" in result.output and "--wait" in result.output
    assert not db_path.exists() or query(db_path, "SELECT count(*) FROM sqlite_master WHERE name = 'runs'") == [(0,)]
    assert invoke(runner, "run", snapshot, "--as-of", AS_OF, "--db", db_path).exit_code == 0


def test_the_lock_is_released_when_its_holder_dies(tmp_path, db_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import time
        from loanrules.store import database_lock
        with database_lock({str(db_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
    ''')], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        from loanrules.errors import DatabaseBusy

        with pytest.raises(DatabaseBusy):
            with database_lock(db_path):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with database_lock(db_path):
            pass  # acquired: the kernel released the dead holder's lock
    finally:
        holder.kill()
        holder.wait(10)


def _start_run(plugins_dir, snapshot, db_path, marker, as_of=AS_OF):
    (plugins_dir / "sleepy.py").write_text(SLEEPING_PLUGIN)
    env = {**os.environ, "LOANRULES_TEST_MARKER": str(marker), "LOANRULES_LOAD_PLUGINS": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "loanrules.cli", "--plugins-dir", str(plugins_dir), "run", str(snapshot),
         "--as-of", as_of, "--db", str(db_path), "--pack", "data-quality", "--pack", "sleepy"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for(path, process, seconds=30):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, "the run ended before reaching the sleeping check"
        assert time.monotonic() < deadline, "the run never reached the sleeping check"
        time.sleep(0.05)


def test_kill_9_mid_run_leaves_the_database_as_it_was_and_the_next_run_recovers(runner, tmp_path, snapshot,
                                                                                 db_path):
    # a good first night, so there is a "before" worth protecting
    assert invoke(runner, "run", snapshot, "--as-of", "2026-11-26", "--db", db_path).exit_code == 0
    before = table_snapshot(db_path)
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    marker = tmp_path / "inside"
    process = _start_run(plugins_dir, snapshot, db_path, marker)
    try:
        _wait_for(marker, process)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
    after = table_snapshot(db_path)
    # the only trace of the dead run is its 'running' row, committed before any work
    dead = [row for row in after["runs"] if row not in before["runs"]]
    assert len(dead) == 1 and "running" in dead[0]
    after["runs"] = [row for row in after["runs"] if row not in dead]
    assert after == before

    result = invoke(runner, "run", snapshot, "--as-of", AS_OF, "--db", db_path)
    assert result.exit_code == 0, result.output
    assert "had died mid-way" in result.output
    dead_id = dead[0][0]
    assert query(db_path, "SELECT status, error LIKE '%died%' FROM runs WHERE run_id = ?", (dead_id,)) == [
        ("failed", 1)]
    assert query(db_path, "SELECT count(*) FROM findings WHERE run_id = ?", (dead_id,)) == [(0,)]
    assert query(db_path, "SELECT count(*) FROM snapshots WHERE as_of = ?", (AS_OF,)) == [(1,)]


def test_an_interrupted_load_leaves_no_snapshot_rows(tmp_path, db_path):
    """Kill -9 at an arbitrary moment of a larger load: whatever was inserted is rolled back."""
    from loanrules import demo

    snapshot = tmp_path / "big"
    demo.write_snapshot(snapshot, loans=20_000)
    conn = connect(db_path)
    ensure_schema(conn)
    conn.close()
    before = table_snapshot(db_path)
    process = subprocess.Popen([sys.executable, "-m", "loanrules.cli", "load", str(snapshot), "--as-of", AS_OF,
                                "--db", str(db_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = db_path.with_name(db_path.name + "-journal")
    deadline = time.monotonic() + 30
    while not journal.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert process.returncode == -signal.SIGKILL, "the load finished before it could be killed"
    assert table_snapshot(db_path) == before
