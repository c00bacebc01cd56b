"""Persistent store of the selection service: jobs, schedules, API tokens, leases, schema version.

The store outlives the service process, so a restart finds every job where it
was. A SQLite file is the default (one service process); any SQLAlchemy URL
(e.g. Postgres) works too. Every method is one short transaction on its own
session, so the API and the scheduler thread can share one JobStore.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Text,
    create_engine,
    event,
    func,
    insert,
    inspect,
    make_url,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from .states import NAMES, JobState

SCHEMA_VERSION = 3
# Step v -> v+1 for every v below SCHEMA_VERSION, run in the opening transaction
# (so a failed upgrade changes nothing). A step must keep every job. Defined
# after the tables they touch, below.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}

TOKEN_KINDS = frozenset({"admin", "read"})
MAX_LIMIT = 500
_FIELDS = frozenset({"phase", "error", "driver", "counts", "published"})
_CURSOR = re.compile(r"(\d+(?:\.\d*)?(?:e[+-]?\d+)?):([0-9a-f]{32})")


class StoreError(Exception):
    """What the store refuses: a bad cursor or limit, a schema it cannot open."""


class IllegalTransition(StoreError):
    """A state change the job's current state does not allow."""

    def __init__(self, job_id: str, from_state: str, to_state: str) -> None:
        super().__init__(f"job {job_id}: cannot go from {from_state} to {to_state}")
        self.job_id, self.from_state, self.to_state = job_id, from_state, to_state


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(primary_key=True)  # uuid4 hex
    state: Mapped[str] = mapped_column(index=True)
    spec: Mapped[str] = mapped_column(Text)  # JSON
    idempotency_key: Mapped[str | None] = mapped_column(unique=True)
    created_at: Mapped[float] = mapped_column(index=True)  # unix seconds
    started_at: Mapped[float | None]
    finished_at: Mapped[float | None]
    phase: Mapped[str | None]
    error: Mapped[str | None] = mapped_column(Text)
    output_path: Mapped[str] = mapped_column(Text)
    work_dir: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(default=0)  # drivers started so far
    driver: Mapped[str | None]  # "pid:1234", "ray:<submission id>"
    counts: Mapped[str | None] = mapped_column(Text)  # JSON, the manifest's counts
    published: Mapped[str | None] = mapped_column(Text)  # where it published: output.path, or its version directory


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    kind: Mapped[str]  # "admin" | "read"
    sha256: Mapped[str] = mapped_column(unique=True)  # the token itself is never stored
    created_at: Mapped[float]


class SchemaVersion(Base):
    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class Lease(Base):
    """Who holds a named role (the scheduler) until when: one holder among the services sharing a store."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(primary_key=True)
    holder: Mapped[str]
    until: Mapped[float]  # unix seconds


class Schedule(Base):
    """A job template fired on a cron expression; `next_fire` is the one time the lease holder acts on."""

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(primary_key=True)  # uuid4 hex: part of every firing's idempotency key
    name: Mapped[str] = mapped_column(unique=True)
    body: Mapped[str] = mapped_column(Text)  # JSON: cron, timezone, policies, the job spec
    paused: Mapped[bool] = mapped_column(default=False)
    next_fire: Mapped[float | None] = mapped_column(index=True)  # unix seconds; None while paused
    last_fire: Mapped[float | None]  # the fire time last acted on (submitted or skipped)
    last_job_id: Mapped[str | None]
    last_note: Mapped[str | None] = mapped_column(Text)  # what the last firing did, one line
    runs: Mapped[int] = mapped_column(default=0)  # jobs submitted so far
    since_refit: Mapped[int] = mapped_column(default=0)  # jobs submitted since the last that fitted anew (refit policy)
    created_at: Mapped[float]


MIGRATIONS[1] = lambda conn: Lease.__table__.create(conn)  # v2: the scheduler's lease
def _v3(conn: Connection) -> None:
    """Schedules, and where each job published (a versioned output's directory differs per job)."""
    Schedule.__table__.create(conn)
    conn.execute(text("ALTER TABLE jobs ADD COLUMN published TEXT"))


MIGRATIONS[2] = _v3


@dataclass(frozen=True)
class JobRecord:
    """A job as read, detached from any session, so it can leave the store."""

    id: str
    state: str
    spec: dict[str, Any]
    idempotency_key: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    phase: str | None
    error: str | None
    output_path: str
    work_dir: str
    attempt: int
    driver: str | None
    counts: dict[str, Any] | None
    published: str | None

    def to_dict(self, spec: bool = True) -> dict[str, Any]:
        """JSON-ready; `spec=False` leaves the spec out (a status poll does not need it, and copying it is most of the cost)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if spec or f.name != "spec"}


@dataclass(frozen=True)
class ScheduleRecord:
    id: str
    name: str
    body: dict[str, Any]
    paused: bool
    next_fire: float | None
    last_fire: float | None
    last_job_id: str | None
    last_note: str | None
    runs: int
    since_refit: int
    created_at: float


def _schedule(row: Schedule) -> ScheduleRecord:
    return ScheduleRecord(**{f.name: getattr(row, f.name) for f in fields(ScheduleRecord) if f.name != "body"}, body=json.loads(row.body))


def _record(job: Job) -> JobRecord:
    return JobRecord(
        id=job.id,
        state=job.state,
        spec=json.loads(job.spec),
        idempotency_key=job.idempotency_key,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        phase=job.phase,
        error=job.error,
        output_path=job.output_path,
        work_dir=job.work_dir,
        attempt=job.attempt,
        driver=job.driver,
        counts=None if job.counts is None else json.loads(job.counts),
        published=job.published,
    )


def _values(fields: dict[str, Any]) -> dict[str, Any]:
    """Column values for the settable fields; counts is stored as JSON."""
    unknown = fields.keys() - _FIELDS
    if unknown:
        raise TypeError(f"unknown job fields: {sorted(unknown)}; settable: {sorted(_FIELDS)}")
    if fields.get("counts") is not None:
        fields = {**fields, "counts": json.dumps(fields["counts"])}
    return fields


def _encode_cursor(job: Job) -> str:
    return base64.urlsafe_b64encode(f"{job.created_at!r}:{job.id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:  # bad base64 or not UTF-8
        raw = ""
    match = _CURSOR.fullmatch(raw)
    if match is None:
        raise StoreError("invalid cursor")
    return float(match[1]), match[2]


def _sqlite_setup(engine: Engine) -> None:
    """Real transactions on SQLite: WAL, so readers never block the writer, and
    SQLAlchemy's own BEGIN (pysqlite's legacy mode skips it for SELECT and DDL,
    which would make migrations non-atomic). Writers BEGIN IMMEDIATE: they take
    the write lock up front, waiting out the busy timeout, instead of failing
    when a read-then-write transaction finds its snapshot stale."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("thresher_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class JobStore:
    """The jobs and tokens of the selection service, in one database."""

    def __init__(self, url: str) -> None:
        sqlite = make_url(url).get_backend_name() == "sqlite"
        self._engine = create_engine(
            url,
            # The pool hands a connection to whichever thread asks; 30 s busy timeout.
            connect_args={"check_same_thread": False, "timeout": 30} if sqlite else {},
            pool_pre_ping=not sqlite,
            # As many pooled connections as the API's threadpool has threads (40), so busy
            # polling never opens and closes overflow connections.
            pool_size=40,
            max_overflow=10,
        )
        if sqlite:
            _sqlite_setup(self._engine)
        self._writer = self._engine.execution_options(thresher_write=True)
        self._reads = sessionmaker(self._engine)
        self._writes = sessionmaker(self._writer, expire_on_commit=False)
        self._open()

    @classmethod
    def sqlite(cls, path: Path) -> JobStore:
        """The default store: one SQLite file, its directory created."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}")

    def close(self) -> None:
        """Release the database connections (the service's shutdown)."""
        self._engine.dispose()

    def _open(self) -> None:
        """Create a new database, upgrade an older one, refuse a newer one."""
        with self._writer.begin() as conn:
            if not inspect(conn).has_table(SchemaVersion.__tablename__):
                Base.metadata.create_all(conn)
                conn.execute(insert(SchemaVersion).values(version=SCHEMA_VERSION))
                return
            version = conn.execute(select(SchemaVersion.version)).scalar_one()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"job store schema version {version} is newer than this thresher "
                    f"({SCHEMA_VERSION}); upgrade thresher"
                )
            if version == SCHEMA_VERSION:
                return
            for step in range(version, SCHEMA_VERSION):
                if step not in MIGRATIONS:
                    raise StoreError(f"no migration from job store schema version {step} to {step + 1}")
                try:
                    MIGRATIONS[step](conn)
                except Exception as e:
                    raise StoreError(f"job store migration {step} -> {step + 1} failed: {e}") from e
            conn.execute(update(SchemaVersion).values(version=SCHEMA_VERSION))

    # Jobs.

    def submit(
        self, spec: dict[str, Any], output_path: str, work_dir: str, idempotency_key: str | None = None
    ) -> tuple[JobRecord, bool]:
        """A new queued job, or (the job first submitted with this key, False).

        The UNIQUE key decides: of two racing submits, the loser's insert fails
        and it returns the winner's job."""
        job = Job(
            id=uuid.uuid4().hex,
            state=JobState.QUEUED,
            spec=json.dumps(spec),
            idempotency_key=idempotency_key,
            created_at=time.time(),
            output_path=output_path,
            work_dir=work_dir,
            attempt=0,
        )
        try:
            with self._writes.begin() as s:
                s.add(job)
        except IntegrityError:
            if idempotency_key is None:
                raise
            with self._reads() as s:
                first = s.scalar(select(Job).where(Job.idempotency_key == idempotency_key))
                if first is None:
                    raise
                return _record(first), False
        return _record(job), True

    def get(self, job_id: str) -> JobRecord | None:
        with self._reads() as s:
            job = s.get(Job, job_id)
            return None if job is None else _record(job)

    def running(self) -> list[JobRecord]:
        """Oldest first: the jobs whose drivers the scheduler watches."""
        with self._reads() as s:
            jobs = s.scalars(select(Job).where(Job.state == JobState.RUNNING).order_by(Job.created_at, Job.id))
            return [_record(job) for job in jobs]

    def queued(self) -> list[JobRecord]:
        """Oldest first: the order the scheduler starts them in."""
        with self._reads() as s:
            jobs = s.scalars(select(Job).where(Job.state == JobState.QUEUED).order_by(Job.created_at, Job.id))
            return [_record(job) for job in jobs]

    def list(
        self, state: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first, a page at a time: pass the returned cursor for the next
        page; it is None after the last one. Keyset paging, so a job submitted
        meanwhile neither shifts nor repeats a page."""
        if not 1 <= limit <= MAX_LIMIT:
            raise StoreError(f"limit must be between 1 and {MAX_LIMIT}")
        if state is not None and state not in NAMES:
            raise StoreError(f"unknown state {state!r}; one of {', '.join(NAMES)}")
        query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
        if state is not None:
            query = query.where(Job.state == state)
        if cursor is not None:
            created_at, job_id = _decode_cursor(cursor)
            query = query.where(
                or_(Job.created_at < created_at, (Job.created_at == created_at) & (Job.id < job_id))
            )
        with self._reads() as s:
            jobs = s.scalars(query).all()
            more = len(jobs) > limit
            page = jobs[:limit]
            return [_record(job) for job in page], _encode_cursor(page[-1]) if more else None

    def transition(self, job_id: str, to: str, **fields: Any) -> JobRecord:
        """Move a job to state `to`, setting any of phase/error/driver/counts/published.

        Compare-and-set: the UPDATE matches the state just read, so of two
        threads moving the same job only one wins; the other gets
        IllegalTransition. Entering running stamps started_at and counts an
        attempt; entering a terminal state stamps finished_at."""
        values = _values(fields)
        now = time.time()
        if to == JobState.RUNNING:
            values.update(started_at=now, attempt=Job.attempt + 1)
        if JobState(to).is_terminal:
            values.update(finished_at=now)
        with self._writes.begin() as s:
            current = s.scalar(select(Job.state).where(Job.id == job_id))
            if current is None:
                raise KeyError(job_id)
            if not JobState(current).can_become(to):
                raise IllegalTransition(job_id, current, to)
            moved = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == current)
                .values(state=to, **values)
                .execution_options(synchronize_session=False)
            )
            if cast("CursorResult[Any]", moved).rowcount != 1:  # moved by another writer meanwhile
                now_state = s.execute(select(Job.state).where(Job.id == job_id)).scalar_one()
                raise IllegalTransition(job_id, now_state, to)
            return _record(s.get_one(Job, job_id))

    def update(self, job_id: str, **fields: Any) -> JobRecord:
        """Set phase/error/driver/counts without changing the state."""
        values = _values(fields)
        if not values:
            raise TypeError("update() needs at least one of phase, error, driver, counts")
        with self._writes.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise KeyError(job_id)
            for name, value in values.items():
                setattr(job, name, value)
            return _record(job)

    def counts_by_state(self) -> dict[str, int]:
        """Jobs per state, every state present (zeros too): for metrics."""
        with self._reads() as s:
            rows = s.execute(select(Job.state, func.count()).group_by(Job.state))
            return dict.fromkeys(JobState, 0) | {JobState(state): n for state, n in rows}

    # Schedules.

    def add_schedule(self, name: str, body: dict[str, Any], paused: bool, next_fire: float | None) -> ScheduleRecord:
        row = Schedule(id=uuid.uuid4().hex, name=name, body=json.dumps(body), paused=paused, next_fire=next_fire, runs=0, since_refit=0, created_at=time.time())
        try:
            with self._writes.begin() as s:
                s.add(row)
        except IntegrityError:
            raise StoreError(f"a schedule named {name!r} exists") from None
        return _schedule(row)

    def schedule(self, name: str) -> ScheduleRecord | None:
        with self._reads() as s:
            row = s.scalar(select(Schedule).where(Schedule.name == name))
            return None if row is None else _schedule(row)

    def schedules(self) -> list[ScheduleRecord]:
        with self._reads() as s:
            return [_schedule(row) for row in s.scalars(select(Schedule).order_by(Schedule.name))]

    def due_schedules(self, now: float) -> list[ScheduleRecord]:
        """Unpaused schedules whose next firing is at or before `now`, earliest first."""
        with self._reads() as s:
            rows = s.scalars(select(Schedule).where(Schedule.paused.is_(False), Schedule.next_fire <= now).order_by(Schedule.next_fire, Schedule.id))
            return [_schedule(row) for row in rows]

    def change_schedule(self, name: str, body: dict[str, Any], paused: bool, next_fire: float | None) -> ScheduleRecord:
        with self._writes.begin() as s:
            row = s.scalar(select(Schedule).where(Schedule.name == name))
            if row is None:
                raise KeyError(name)
            row.body, row.paused, row.next_fire = json.dumps(body), paused, next_fire
            return _schedule(row)

    def delete_schedule(self, name: str) -> bool:
        with self._writes.begin() as s:
            row = s.scalar(select(Schedule).where(Schedule.name == name))
            if row is not None:
                s.delete(row)
            return row is not None

    def schedule_fired(self, schedule_id: str, due: float, fired: float, next_fire: float, job_id: str | None, note: str, refit: bool = False) -> bool:
        """Record a firing and move on to `next_fire`, only if the schedule still waits for `due` (compare-and-set):
        a firing a PATCH, pause or another holder got to first changes nothing. `refit`: the job fits anew."""
        values: dict[str, Any] = {"next_fire": next_fire, "last_fire": fired, "last_note": note}
        if job_id is not None:
            values.update(last_job_id=job_id, runs=Schedule.runs + 1, since_refit=0 if refit else Schedule.since_refit + 1)
        with self._writes.begin() as s:
            moved = s.execute(
                update(Schedule).where(Schedule.id == schedule_id, Schedule.next_fire == due, Schedule.paused.is_(False)).values(**values)
            )
            return cast("CursorResult[Any]", moved).rowcount == 1

    # Tokens.

    def add_token(self, name: str, kind: str, token: str | None = None) -> str:
        """A token of `kind` (a new random one unless given, e.g. from the config); returned, only its hash is kept."""
        if kind not in TOKEN_KINDS:
            raise ValueError(f"token kind must be one of {sorted(TOKEN_KINDS)}, not {kind!r}")
        token = token or secrets.token_urlsafe(32)
        with self._writes.begin() as s:
            s.add(Token(name=name, kind=kind, sha256=_sha256(token), created_at=time.time()))
        return token

    def check_token(self, token: str) -> str | None:
        """The token's kind, or None if unknown. Looking up its hash (never the
        token) leaks nothing through timing that would help forge one."""
        with self._reads() as s:
            return s.scalar(select(Token.kind).where(Token.sha256 == _sha256(token)))

    def has_tokens(self) -> bool:
        with self._reads() as s:
            return s.scalar(select(Token.id).limit(1)) is not None

    # Leases.

    def hold_lease(self, name: str, holder: str, ttl_s: float) -> str:
        """Take or renew lease `name` for `ttl_s` seconds; returns who holds it now (`holder` if we do).

        One conditional UPDATE (ours, or expired) or one INSERT: of two
        services racing for it, exactly one wins."""
        now = time.time()
        with self._writes.begin() as s:
            taken = s.execute(
                update(Lease)
                .where(Lease.name == name, or_(Lease.holder == holder, Lease.until < now))
                .values(holder=holder, until=now + ttl_s)
            )
            if cast("CursorResult[Any]", taken).rowcount == 1:
                return holder
            current = s.scalar(select(Lease.holder).where(Lease.name == name))
        if current is not None:
            return current
        try:
            with self._writes.begin() as s:
                s.add(Lease(name=name, holder=holder, until=now + ttl_s))
            return holder
        except IntegrityError:  # another service inserted it first
            with self._reads() as s:
                return s.scalar(select(Lease.holder).where(Lease.name == name)) or ""

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up now (a clean shutdown), so another service need not wait for it to expire."""
        with self._writes.begin() as s:
            s.execute(update(Lease).where(Lease.name == name, Lease.holder == holder).values(until=0.0))

    def ping(self) -> bool:
        """Whether the database answers (for /readyz)."""
        try:
            with self._engine.connect() as conn:
                conn.execute(select(1))
        except SQLAlchemyError:
            return False
        return True


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
