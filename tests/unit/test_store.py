"""The selection service's job store, on a real SQLite file and on a real PostgreSQL server (every test runs on both)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, inspect, text

from thresher.services import store

from .. import postgres
from thresher.services.states import NAMES as STATES, TERMINAL, JobState
from thresher.services.store import IllegalTransition, JobStore, StoreError

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = JobState  # in declaration order

LEGAL = {
    (QUEUED, RUNNING),
    (QUEUED, CANCELLED),
    (RUNNING, SUCCEEDED),
    (RUNNING, FAILED),
    (RUNNING, CANCELLED),
    (RUNNING, QUEUED),
}


@pytest.fixture(scope="module")
def postgres_server():
    with postgres.server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path: Path) -> str:
    """A new, empty job store's URL on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "state" / "jobs.db"
        path.parent.mkdir(parents=True)
        return f"sqlite:///{path}"
    return postgres.fresh_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def js(url: str):
    s = JobStore(url)
    yield s
    s.close()


def query(url: str, sql: str) -> list[tuple]:
    """Rows of `sql`, read past the store with a connection of its own."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def columns(url: str, table: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [c["name"] for c in inspect(conn).get_columns(table)]
    finally:
        engine.dispose()


def submit(js: JobStore, key: str | None = None, n: int = 0):
    return js.submit({"name": f"job{n}", "budget": {"tokens": 10}}, f"/out/{n}", f"/work/{n}", idempotency_key=key)


def in_state(js: JobStore, state: str):
    """A job driven to `state` along legal transitions."""
    job, _ = submit(js)
    path = {QUEUED: [], RUNNING: [RUNNING], CANCELLED: [CANCELLED]}.get(state, [RUNNING, state])
    for to in path:
        job = js.transition(job.id, to)
    return job


def db_version(url: str) -> int:
    return query(url, "SELECT version FROM schema_version")[0][0]


def test_submit_get_round_trip(js: JobStore):
    job, created = submit(js, n=1)
    assert created
    assert len(job.id) == 32 and int(job.id, 16) >= 0
    assert job.state == QUEUED and job.attempt == 0
    assert job.started_at is None and job.finished_at is None and job.counts is None
    got = js.get(job.id)
    assert got == job
    assert got.spec == {"name": "job1", "budget": {"tokens": 10}}
    assert (got.output_path, got.work_dir) == ("/out/1", "/work/1")
    assert got.to_dict()["spec"] == got.spec and got.to_dict()["id"] == job.id
    assert js.get("0" * 32) is None


def test_idempotency_key_returns_the_first_job(js: JobStore):
    first, created = submit(js, key="k1", n=1)
    again, created_again = submit(js, key="k1", n=2)
    assert created and not created_again
    assert again == first and again.spec["name"] == "job1"
    other, created_other = submit(js, key="k2")
    assert created_other and other.id != first.id
    assert js.counts_by_state()[QUEUED] == 2


def test_idempotency_race_ends_with_one_job(js: JobStore):
    n = 8
    barrier = threading.Barrier(n)
    results = []

    def go(i: int) -> None:
        barrier.wait()
        results.append(submit(js, key="race", n=i))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == n
    assert sum(created for _, created in results) == 1
    assert len({job.id for job, _ in results}) == 1
    assert js.counts_by_state()[QUEUED] == 1


@pytest.mark.parametrize("src,dst", sorted(LEGAL))
def test_legal_transitions(js: JobStore, src: str, dst: str):
    job = in_state(js, src)
    moved = js.transition(job.id, dst)
    assert moved.state == dst == js.get(job.id).state


@pytest.mark.parametrize(
    "src,dst", [(a, b) for a in STATES for b in STATES if (a, b) not in LEGAL]
)
def test_illegal_transitions_raise(js: JobStore, src: str, dst: str):
    job = in_state(js, src)
    with pytest.raises(IllegalTransition) as err:
        js.transition(job.id, dst)
    assert (err.value.job_id, err.value.from_state, err.value.to_state) == (job.id, src, dst)
    assert job.id in str(err.value) and src in str(err.value) and dst in str(err.value)
    assert js.get(job.id) == job  # unchanged


def test_transition_unknown_job_and_field(js: JobStore):
    with pytest.raises(KeyError):
        js.transition("f" * 32, RUNNING)
    with pytest.raises(KeyError):
        js.update("f" * 32, phase="embed")
    job, _ = submit(js)
    with pytest.raises(TypeError):
        js.transition(job.id, RUNNING, state=SUCCEEDED)
    assert js.get(job.id).state == QUEUED


def test_compare_and_set_one_winner(js: JobStore):
    job, _ = submit(js)
    n = 10
    barrier = threading.Barrier(n)
    won, lost = [], []

    def go() -> None:
        barrier.wait()
        try:
            won.append(js.transition(job.id, RUNNING, driver=f"pid:{threading.get_ident()}"))
        except IllegalTransition as e:
            lost.append(e)

    threads = [threading.Thread(target=go) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == n - 1
    assert all(e.from_state == RUNNING for e in lost)
    final = js.get(job.id)
    assert final.attempt == 1 and final.driver == won[0].driver


def test_timestamps_attempt_and_fields(js: JobStore):
    job, _ = submit(js)
    running = js.transition(job.id, RUNNING, driver="pid:1", phase="embed")
    assert running.attempt == 1 and running.started_at >= job.created_at
    assert running.finished_at is None and (running.driver, running.phase) == ("pid:1", "embed")

    updated = js.update(job.id, phase="score")
    assert (updated.state, updated.phase, updated.started_at) == (RUNNING, "score", running.started_at)

    requeued = js.transition(job.id, QUEUED, driver=None, error="driver pid:1 died")
    assert requeued.driver is None and requeued.error == "driver pid:1 died" and requeued.attempt == 1
    assert requeued.finished_at is None

    again = js.transition(job.id, RUNNING, driver="ray:raysubmit_x")
    assert again.attempt == 2 and again.started_at >= running.started_at

    done = js.transition(job.id, SUCCEEDED, counts={"docs_in": 10, "docs_out": 4}, phase=None)
    assert done.finished_at >= done.started_at and done.phase is None
    assert done.counts == {"docs_in": 10, "docs_out": 4} == js.get(job.id).counts
    assert done.to_dict()["counts"] == done.counts


def test_finished_at_on_every_terminal_state(js: JobStore):
    for state in TERMINAL:
        job = in_state(js, state)
        assert job.finished_at is not None and job.state == state


def test_list_newest_first_pages_and_filter(js: JobStore):
    jobs = [submit(js, n=i)[0] for i in range(7)]
    newest_first = sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)

    pages, cursor = [], None
    while True:
        page, cursor = js.list(limit=3, cursor=cursor)
        pages.append(page)
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [j.id for p in pages for j in p] == [j.id for j in newest_first]

    exact, cursor = js.list(limit=7)
    assert len(exact) == 7 and cursor is None

    for job in jobs[:2]:
        js.transition(job.id, RUNNING)
    running, cursor = js.list(state=RUNNING)
    assert {j.id for j in running} == {jobs[0].id, jobs[1].id} and cursor is None
    assert [j.id for j in running] == [j.id for j in newest_first if j.id in {jobs[0].id, jobs[1].id}]
    queued, _ = js.list(state=QUEUED, limit=10)
    assert len(queued) == 5
    assert js.list(state=FAILED) == ([], None)


def test_list_rejects_bad_input(js: JobStore):
    submit(js)
    for bad in ["garbage!", "bm90IGEgY3Vyc29y", "", "MTIzOnh5eg"]:
        with pytest.raises(StoreError, match="invalid cursor"):
            js.list(cursor=bad)
    for limit in [0, 501]:
        with pytest.raises(StoreError):
            js.list(limit=limit)
    with pytest.raises(StoreError):
        js.list(state="paused")
    assert len(js.list(limit=500)[0]) == 1


def test_queued_oldest_first_and_running(js: JobStore):
    jobs = [submit(js, n=i)[0] for i in range(4)]
    js.transition(jobs[1].id, RUNNING)
    oldest_first = sorted((j for j in jobs if j.id != jobs[1].id), key=lambda j: (j.created_at, j.id))
    assert [j.id for j in js.queued()] == [j.id for j in oldest_first]
    assert [j.id for j in js.running()] == [jobs[1].id]


def test_counts_by_state(js: JobStore):
    assert js.counts_by_state() == dict.fromkeys(STATES, 0)
    in_state(js, QUEUED)
    in_state(js, QUEUED)
    in_state(js, RUNNING)
    in_state(js, FAILED)
    assert js.counts_by_state() == {QUEUED: 2, RUNNING: 1, SUCCEEDED: 0, FAILED: 1, CANCELLED: 0}


def test_tokens(js: JobStore, url: str):
    assert not js.has_tokens()
    admin = js.add_token("ops", "admin")
    reader = js.add_token("dashboard", "read")
    assert admin != reader and len(admin) >= 40
    assert js.has_tokens()
    assert js.check_token(admin) == "admin"
    assert js.check_token(reader) == "read"
    assert js.check_token(admin + "x") is None
    assert js.check_token("") is None
    with pytest.raises(ValueError):
        js.add_token("x", "root")
    js.close()

    stored = repr(query(url, "SELECT * FROM tokens"))
    assert admin not in stored and reader not in stored
    assert store._sha256(admin) in stored  # we did read the data
    if url.startswith("sqlite"):  # nor anywhere in the database's files
        db = Path(url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
        assert admin.encode() not in raw and store._sha256(admin).encode() in raw


def test_ping(js: JobStore):
    assert js.ping()


def test_fresh_db_has_current_version_and_wal(js: JobStore, url: str):
    assert db_version(url) == store.SCHEMA_VERSION == 3
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_jobs_survive_restart(url: str):
    first = JobStore(url)
    job, _ = submit(first, key="k")
    job = first.transition(job.id, RUNNING, phase="embed", driver="pid:7")
    first.add_token("ops", "admin")
    first.close()

    second = JobStore(url)
    assert second.get(job.id) == job
    assert submit(second, key="k") == (job, False)
    assert second.has_tokens()
    assert db_version(url) == 3
    second.close()


def test_newer_schema_is_refused(url: str):
    JobStore(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = 9"))
    engine.dispose()
    with pytest.raises(StoreError) as err:
        JobStore(url)
    assert str(err.value) == "job store schema version 9 is newer than this thresher (3); upgrade thresher"


def make_v0(url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database written by a (fake) thresher whose schema was version 0."""
    monkeypatch.setattr(store, "SCHEMA_VERSION", 0)
    old = JobStore(url)
    job, _ = submit(old)
    old.close()
    monkeypatch.setattr(store, "SCHEMA_VERSION", 1)
    assert db_version(url) == 0
    return job.id


def test_migration_from_older_version_keeps_jobs(url: str, monkeypatch: pytest.MonkeyPatch):
    job_id = make_v0(url, monkeypatch)
    ran = []

    def v0_to_v1(conn: Connection) -> None:
        ran.append(0)
        conn.execute(text("ALTER TABLE jobs ADD COLUMN note TEXT"))
        conn.execute(text("UPDATE jobs SET note = 'migrated'"))

    monkeypatch.setattr(store, "MIGRATIONS", {0: v0_to_v1})
    js = JobStore(url)
    assert ran == [0] and db_version(url) == 1
    assert js.get(job_id).state == QUEUED
    js.close()
    assert query(url, "SELECT id, note FROM jobs") == [(job_id, "migrated")]

    JobStore(url).close()  # already current: the step does not run again
    assert ran == [0]


def test_failed_migration_changes_nothing(url: str, monkeypatch: pytest.MonkeyPatch):
    job_id = make_v0(url, monkeypatch)

    def broken(conn: Connection) -> None:
        conn.execute(text("ALTER TABLE jobs ADD COLUMN note TEXT"))
        conn.execute(text("DELETE FROM jobs"))
        raise RuntimeError("boom")

    monkeypatch.setattr(store, "MIGRATIONS", {0: broken})
    with pytest.raises(StoreError, match="migration 0 -> 1 failed: boom"):
        JobStore(url)
    assert db_version(url) == 0
    assert "note" not in columns(url, "jobs")
    assert query(url, "SELECT id FROM jobs") == [(job_id,)]

    monkeypatch.setattr(store, "MIGRATIONS", {})
    with pytest.raises(StoreError, match="no migration from job store schema version 0 to 1"):
        JobStore(url)


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_store_gains_the_tables_of_later_versions_and_keeps_its_jobs(url: str, version: int):
    """The real steps: v1 had no leases table, v2 no schedules table; each upgrade keeps jobs and tokens."""
    old = JobStore(url)
    job, _ = submit(old, key="k")
    old.add_token("ops", "admin")
    old.close()
    engine = create_engine(url)
    with engine.begin() as conn:  # what that version looked like
        conn.execute(text("DROP TABLE schedules"))
        conn.execute(text("ALTER TABLE jobs DROP COLUMN published"))
        if version == 1:
            conn.execute(text("DROP TABLE leases"))
        conn.execute(text(f"UPDATE schema_version SET version = {version}"))
    engine.dispose()
    assert "schedules" not in tables(url)

    upgraded = JobStore(url)
    assert db_version(url) == 3 and {"leases", "schedules"} <= set(tables(url))
    assert upgraded.get(job.id) == job and upgraded.has_tokens()
    assert upgraded.hold_lease("scheduler", "a", 10) == "a"
    made = upgraded.add_schedule("nightly", {"cron": "0 2 * * *"}, False, 1.0)
    assert upgraded.due_schedules(1.0) == [made] and upgraded.due_schedules(0.5) == []
    upgraded.close()


def tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_a_lease_has_one_holder_until_it_lapses_or_is_released(js: JobStore):
    assert js.hold_lease("scheduler", "a", 60) == "a"
    assert js.hold_lease("scheduler", "b", 60) == "a"  # held: b learns who holds it
    assert js.hold_lease("scheduler", "a", 60) == "a"  # renewed
    js.release_lease("scheduler", "b")  # not b's to release
    assert js.hold_lease("scheduler", "b", 60) == "a"
    js.release_lease("scheduler", "a")
    assert js.hold_lease("scheduler", "b", 0.2) == "b"
    time.sleep(0.3)  # b's lapses without a renewal
    assert js.hold_lease("scheduler", "a", 60) == "a"
    assert js.hold_lease("other", "b", 60) == "b"  # leases are per name


def test_of_services_racing_for_a_free_lease_exactly_one_wins(js: JobStore):
    won: list[str] = []
    barrier = threading.Barrier(8)

    def race(me: str) -> None:
        barrier.wait()
        if js.hold_lease("scheduler", me, 60) == me:
            won.append(me)

    threads = [threading.Thread(target=race, args=(f"s{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and js.hold_lease("scheduler", "late", 60) == won[0]


def test_the_state_machine_is_the_one_the_store_enforces():
    from thresher.services.states import RAY_JOBS

    assert {(a, b) for a in JobState for b in JobState if a.can_become(b)} == LEGAL
    assert TERMINAL == {SUCCEEDED, FAILED, CANCELLED} and not any(QUEUED.is_terminal or RUNNING.is_terminal for _ in [0])
    assert set(RAY_JOBS) == set(JobState) and RAY_JOBS[CANCELLED] == "STOPPED"
    assert f"{QUEUED}" == "queued" and QUEUED == "queued"  # stored and served as the plain name
