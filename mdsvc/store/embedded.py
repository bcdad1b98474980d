# -*- test-case-name: tests.test_store -*-
"""
The embedded store's file (C{[mdsvc] store = sqlite:PATH}) as an SQLAlchemy engine, and the
transactions L{mdsvc.store.sql.SQLDocuments} runs on it.

The file holds guests' passwords and user data: it is created 0600 (its directory 0700 when
mdsvc makes it) before SQLite opens it, and SQLite gives its C{-wal} and C{-shm} files the
database's mode.  Every connection is in WAL mode (readers go on while C{mdsvc-manage} writes),
waits up to L{BUSY_TIMEOUT} seconds for another writer's lock, and enforces foreign keys (stores
written by mdsvc before the SQLAlchemy store cascade deletes through them).

Transactions are mdsvc's, not the driver's: the driver's own implicit C{BEGIN} is turned off and
SQLAlchemy's C{begin} event issues C{BEGIN} for a read and C{BEGIN IMMEDIATE} for a write, so a
writer takes the write lock before it reads what it numbers (two imports at once queue; neither
fails half-way on a lock upgrade).

Errors stay SQLite's own (L{sqlite3.Error}, not SQLAlchemy's wrapper): a full disk or a corrupt
file is an error of the store (the API's logged 500, startup's "corrupt" line), not a server
away (a database server's L{mdsvc.interfaces.StoreUnavailable}).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool

T = TypeVar("T")

BUSY_TIMEOUT = 30
"""Seconds a statement waits for another connection's lock before it fails."""

POOL_SIZE = 10
"""Connections kept open: the reactor thread pool's default maximum, so that no call opens one."""

_WRITE = "mdsvc_write"
"""The execution option that makes a transaction's C{BEGIN} an C{IMMEDIATE} one."""


def create_file(path: str) -> None:
    """
    Create the store's file (0600, whatever the umask) and its directory (0700) when missing,
    before SQLite does: nothing is ever written into a file others may read.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def sqlite_engine(path: str, pool_size: int = POOL_SIZE) -> Engine:
    """
    An engine for the store file C{path} (not created here: see L{create_file}).

    The pool is a L{QueuePool} of C{pool_size} kept connections, opened with
    C{check_same_thread=False}: the API calls the store from the reactor's thread pool, and a
    connection goes back to the pool from whichever thread used it, to be taken by another.
    Each is used by one thread at a time (a pool checkout), which is all SQLite asks.  Kept
    connections matter: a new connection to a WAL database must create the C{-shm} file when
    no other is open, which fails on a full disk, while a kept one reads on.  More concurrent
    calls than C{pool_size} open overflow connections (never waited for, closed when returned).
    Not a L{sqlalchemy.pool.StaticPool} (one connection for every thread: one thread's
    C{BEGIN} would take the others' statements into its transaction), nor a
    L{sqlalchemy.pool.SingletonThreadPool} (one per thread, closed behind a thread's back when
    there are more threads than its size), nor a L{sqlalchemy.pool.NullPool} (a new connection,
    and its schema reads, per call).  No pre-ping (a file does not go away) and no reset on
    return (every transaction is ended by L{read} or L{write}).
    """
    engine = create_engine(
        URL.create("sqlite", database=path),
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=-1,
        pool_reset_on_return=None,
        connect_args={"timeout": BUSY_TIMEOUT, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection: Any, record: Any) -> None:
        """A new connection: mdsvc's transactions, foreign keys, the busy timeout, WAL."""
        dbapi_connection.isolation_level = None  # no implicit BEGIN: begin() below issues it
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT * 1000}")
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def begin(conn: Connection) -> None:
        """A transaction's start: a write takes the write lock at once."""
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


def read(engine: Engine, query: Callable[[Connection], T]) -> T:
    """
    Run C{query} in one read transaction, ended before returning: no snapshot is held between
    calls (the next call sees new commits, and a checkpoint is never held back).

    @raise sqlite3.Error: as SQLite raised it.
    """
    try:
        with engine.connect() as conn:
            result = query(conn)
            conn.rollback()
            return result
    except DBAPIError as e:
        raise _own(e) from None


def write(engine: Engine, change: Callable[[Connection], T]) -> T:
    """
    Run C{change} in one write transaction (C{BEGIN IMMEDIATE}): committed if it returns, rolled
    back if it raises.

    @raise sqlite3.Error: as SQLite raised it.
    """
    try:
        with engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                return change(conn)
    except DBAPIError as e:
        raise _own(e) from None


class Select:
    """
    One SELECT compiled once for the file's dialect, run on a kept connection straight through
    the driver: the cache misses of a boot storm (an instance by uuid, the uuids of an address)
    cost what a bare C{sqlite3} query costs, not SQLAlchemy's execution machinery around it
    (C{bench/store.py}: about five times as much per call).  The statement alone, with no
    C{BEGIN} (the connections are in the driver's autocommit mode), is a transaction of its own:
    it sees every commit made before it and holds nothing after it.
    """

    def __init__(self, engine: Engine, statement: Any) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.engine = engine
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup or ())

    def rows(self, **params: Any) -> list[Any]:
        """
        The rows the statement selects with C{params} (its bound parameters by name).

        @raise sqlite3.Error: as SQLite raised it.
        """
        try:
            connection = self.engine.raw_connection()
        except DBAPIError as e:
            raise _own(e) from None
        try:
            driver = connection.driver_connection
            assert driver is not None  # (a connection checked out of the pool is open)
            # (sqlite3's own execute: its cursor is made, used up and dropped in C)
            return driver.execute(self.sql, tuple(params[name] for name in self.names)).fetchall()
        finally:
            connection.close()  # back to the pool


def _own(error: DBAPIError) -> BaseException:
    """SQLite's own exception inside SQLAlchemy's wrapper (the wrapper itself if there is none)."""
    return error.orig if isinstance(error.orig, sqlite3.Error) else error
