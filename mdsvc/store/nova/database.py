# -*- test-case-name: tests.test_nova_database -*-
"""
Engines for Nova's databases and the short transactions mdsvc runs on them.

Any SQLAlchemy URL Nova accepts works (MariaDB/MySQL through PyMySQL, PostgreSQL through
psycopg2, SQLite).  Every engine pools its connections (as many as the store has threads, no
overflow), checks a pooled connection before using it (C{pool_pre_ping}: after a database
restart the dead ones are replaced, no mdsvc restart needed) and bounds connecting and every
query by one timeout: the driver's socket timeouts, and on MariaDB C{max_statement_time}, on
PostgreSQL C{statement_timeout}, server-side too.  Reads are read-only transactions, ended
(rolled back) as soon as they are read: nothing is held between calls, which suits Galera.

Whatever goes wrong with a database (refused, timed out, gone away, out of pooled connections)
becomes L{StoreUnavailable}, one line without the password; the API answers it with 503.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mdsvc.interfaces import StoreUnavailable

T = TypeVar("T")

SUPPORTED = ("mysql", "postgresql", "sqlite")
"""The database kinds (URL backends) mdsvc reads."""


def check_url(text: str) -> URL:
    """
    The URL C{text}, parsed; its driver is imported when the engine is made.

    @raise ValueError: not a URL of a supported kind (the message never holds the URL: it may
        hold a password).
    """
    try:
        url = make_url(text)
    except ArgumentError:
        raise ValueError("allowed: an SQLAlchemy URL such as mysql+pymysql://nova:PASSWORD@db/nova") from None
    if url.get_backend_name() not in SUPPORTED:
        raise ValueError(f"allowed: a {', '.join(SUPPORTED)} URL (not {url.get_backend_name()})")
    return url


def shown(url: str | URL) -> str:
    """The URL for a log line or an error: its password masked."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<an invalid URL>"
    return parsed.render_as_string(hide_password=True)


def _connect_args(url: URL, timeout: float) -> dict[str, Any]:
    """The driver's own connect and socket timeouts (whole seconds where the driver counts so)."""
    seconds = max(1, math.ceil(timeout))
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "mysql" and driver in ("pymysql", "mysqldb"):
        return {"connect_timeout": seconds, "read_timeout": seconds, "write_timeout": seconds}
    if backend == "postgresql" and driver in ("psycopg2", "psycopg"):
        return {"connect_timeout": seconds, "options": f"-c statement_timeout={int(timeout * 1000)}"}
    if backend == "sqlite":
        return {"timeout": timeout, "check_same_thread": False}
    return {}


def make_engine(text: str, pool_size: int, timeout: float) -> Engine:
    """
    An engine for the database C{text}: C{pool_size} pooled connections, pre-pinged, with
    C{timeout} seconds for connecting, for waiting for a pooled connection and for each query.

    @raise ValueError: the URL or its driver cannot be used (one line, without the password).
    """
    url = check_url(text)
    # read() and write() end every transaction themselves: no second rollback when a connection
    # goes back to the pool (a round trip per call saved)
    options: dict[str, Any] = {"pool_pre_ping": True, "pool_reset_on_return": None, "connect_args": _connect_args(url, timeout)}
    if url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:"):
        options.update(pool_size=pool_size, max_overflow=0, pool_timeout=timeout, pool_recycle=3600)
    try:
        engine = create_engine(url, **options)
    except (NoSuchModuleError, ImportError) as e:
        raise ValueError(f"no driver for {shown(url)}: {e} (install PyMySQL for mysql+pymysql://, psycopg for postgresql://)") from None
    except (ArgumentError, TypeError) as e:
        raise ValueError(f"cannot use {shown(url)}: {e}") from None
    if engine.dialect.name == "mysql":
        _limit_statements(engine, timeout)
    return engine


def _limit_statements(engine: Engine, timeout: float) -> None:
    """
    The server ends a statement that runs past C{timeout}: C{max_statement_time} on MariaDB,
    C{max_execution_time} (SELECTs) on MySQL 5.7 and later; a server without either is left as
    it is (the driver's socket timeouts still bound the wait).
    """

    @event.listens_for(engine, "connect")
    def limit(dbapi_connection: Any, record: Any) -> None:
        """Set the session's statement limit on each new connection."""
        version = str(getattr(dbapi_connection, "server_version", "") or _server_version(dbapi_connection)).lower()
        statement = (f"SET SESSION max_statement_time = {float(timeout)}" if "mariadb" in version
                     else f"SET SESSION max_execution_time = {int(timeout * 1000)}")
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        except Exception:  # noqa: BLE001 - an older server without the variable: the socket timeouts remain
            pass
        finally:
            cursor.close()


def _server_version(dbapi_connection: Any) -> str:
    get = getattr(dbapi_connection, "get_server_info", None)
    return str(get()) if get is not None else ""


def one_line(error: BaseException) -> str:
    """A database error as one line: the driver's own message, without the SQL statement."""
    inner = getattr(error, "orig", None) or error
    text = " ".join(str(inner).split())
    return text[:300] or type(inner).__name__


def unavailable(where: str, error: BaseException) -> StoreUnavailable:
    """The L{StoreUnavailable} for C{error} on the database C{where} (a URL shown without password)."""
    return StoreUnavailable(f"{where}: {one_line(error)}")


_FAILURES = (DBAPIError, PoolTimeout, SQLAlchemyError, OSError)


def read(engine: Engine, query: Callable[[Connection], T], single: bool = False) -> T:
    """
    Run C{query} in one read-only transaction, ended before returning.

    @param single: the query is one statement, a transaction of its own already (no C{SET
        TRANSACTION READ ONLY} round trip).
    @raise StoreUnavailable: the database cannot be reached or the query failed.
    """
    try:
        with engine.connect() as conn:
            if not single and engine.dialect.name in ("mysql", "postgresql"):
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            result = query(conn)
            conn.rollback()
            return result
    except _FAILURES as e:
        raise unavailable(shown(engine.url), e) from None


def write(engine: Engine, change: Callable[[Connection], T]) -> T:
    """
    Run C{change} in one transaction: committed if it returns, rolled back if it raises.

    @raise StoreUnavailable: the database cannot be reached or a statement failed.
    """
    try:
        with engine.begin() as conn:
            return change(conn)
    except _FAILURES as e:
        raise unavailable(shown(engine.url), e) from None


class Engines:
    """
    One engine per database URL, made on first use (cell databases are found at run time) and
    disposed of together.
    """

    def __init__(self, pool_size: int, timeout: float) -> None:
        self.pool_size = pool_size
        self.timeout = timeout
        self._lock = threading.Lock()
        self._engines: dict[str, Engine] = {}

    def get(self, url: str) -> Engine:
        """
        The engine of C{url}.

        @raise StoreUnavailable: the URL (a cell mapping's) cannot be used.
        """
        with self._lock:
            engine = self._engines.get(url)
            if engine is None:
                try:
                    engine = make_engine(url, self.pool_size, self.timeout)
                except ValueError as e:
                    raise StoreUnavailable(f"database {shown(url)}: {e}") from None
                self._engines[url] = engine
            return engine

    def dispose(self) -> None:
        """Close every pooled connection (a later L{get} makes new engines)."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.dispose()
