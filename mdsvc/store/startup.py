# -*- test-case-name: tests.test_store_startup -*-
"""
What the service and C{mdsvc-manage} check of the embedded SQLite store before they use it.

The store holds guests' passwords, user data and admin passwords, so its files are the owner's
only (0600): modes an older mdsvc left (0644) are tightened, with a warning, and a store whose
modes cannot be fixed (another user owns it) stops startup.  Its directory is made the owner's
only (0700) when it is the store's own; a directory shared with other things (C{state_path},
where the agent's socket lives, or anything holding other files) keeps its mode, and when mdsvc
creates a shared one it is 0711, so that proxies reach the socket by name but nobody lists it.

Then C{PRAGMA quick_check} looks at every page, so that a corrupt store stops startup with one
line instead of answering 500 for some instances later.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterable

from twisted.logger import Logger

from mdsvc.config import Config
from mdsvc.store.sql import SQLDocuments

log = Logger()

# The database and the files SQLite keeps next to it.
SUFFIXES = ("", "-wal", "-shm", "-journal")
FILE_MODE = 0o600
OWN_DIRECTORY_MODE = 0o700
SHARED_DIRECTORY_MODE = 0o711

_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


class StoreProblem(Exception):
    """The store cannot be used as it is; C{str()} is one line (the caller names the config file)."""


def prepare_configured_store(config: Config, logger: Logger = log) -> None:
    """
    L{prepare_store} for a node's configuration: C{state_path} and the agent socket's directory
    are shared with other processes.  Stores of other kinds are left to their own code.
    """
    if not config.store.startswith("sqlite:"):
        return
    prepare_store(config.store, (config.state_path, os.path.dirname(config.agent.socket_path)), logger)


def prepare_store(url: str, shared: Iterable[str] = (), logger: Logger = log) -> str:
    """
    Make the SQLite store of C{url} (C{sqlite:PATH}) private and check that it is sound,
    creating it (and its directory) when missing.

    @param shared: directories other processes use too: never tightened.
    @return: the store's path.
    @raise StoreProblem: naming the store and what to do.
    """
    path = url[len("sqlite:"):]
    where = f"[mdsvc] store {url}"
    directory = os.path.dirname(os.path.abspath(path))
    is_shared = os.path.realpath(directory) in {os.path.realpath(d) for d in shared}
    if not os.path.isdir(directory):
        try:
            os.makedirs(directory)
            os.chmod(directory, SHARED_DIRECTORY_MODE if is_shared else OWN_DIRECTORY_MODE)
        except OSError as e:
            raise StoreProblem(f"{where}: cannot open: cannot create {e.filename or directory}: {e.strerror or e}") from None
    _check_directory(directory, os.path.basename(path), is_shared, where, logger)
    for suffix in SUFFIXES:
        _check_file(path + suffix, where, logger)
    _check_sound(path, where)
    try:
        documents = SQLDocuments(f"sqlite:{path}", pool_size=1)
        try:
            documents.create()  # a new store, with its tables
        finally:
            documents.close()
    except sqlite3.DatabaseError as e:
        raise StoreProblem(_corrupt(where, str(e)) if _is_corrupt(e) else f"{where}: cannot open: {e}") from None
    except OSError as e:
        raise StoreProblem(f"{where}: cannot open: {e.strerror or e}") from None
    return path


def _check_directory(directory: str, name: str, is_shared: bool, where: str, logger: Logger) -> None:
    """Tighten the store's own directory to 0700; leave a shared one alone (warning if others may write)."""
    try:
        old = stat.S_IMODE(os.stat(directory).st_mode)
        entries = os.listdir(directory)
    except OSError as e:
        raise StoreProblem(f"{where}: cannot open: {directory}: {e.strerror or e}") from None
    own = not is_shared and all(entry in {name + suffix for suffix in SUFFIXES} for entry in entries)
    if own and old & 0o077:
        try:
            os.chmod(directory, OWN_DIRECTORY_MODE)
        except OSError:
            raise StoreProblem(
                f"{where}: directory mode {old:04o} lets other users reach the store's files; chmod 700 {directory}"
            ) from None
        logger.warn("store directory {path} had mode {mode}; changed it to 0700", path=directory, mode=f"{old:04o}")
    elif not own and old & 0o022:
        logger.warn(
            "store directory {path} (mode {mode}) is shared and writable by other users, who could replace the store's"
            " files; mdsvc leaves its mode alone", path=directory, mode=f"{old:04o}",
        )


def _check_file(path: str, where: str, logger: Logger) -> None:
    """Tighten one of the store's files to 0600 (it may not exist)."""
    try:
        old = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StoreProblem(f"{where}: cannot open: {path}: {e.strerror or e}") from None
    if not old & 0o077:
        return
    try:
        os.chmod(path, FILE_MODE)
    except OSError:
        raise StoreProblem(
            f"{where}: mode {old:04o} lets other users read guest passwords and user data; chmod 600 {path}"
        ) from None
    logger.warn("store file {path} had mode {mode}, open to other users; changed it to 0600", path=path, mode=f"{old:04o}")


def _check_sound(path: str, where: str) -> None:
    """C{PRAGMA quick_check} of an existing store: anything but C{ok} is a corrupt store."""
    try:
        if os.path.getsize(path) == 0:
            return  # a new store: SQLite writes its first page
    except FileNotFoundError:
        return
    try:
        # mode=rw: never create (the file is there), and never write the schema into a corrupt file
        conn = sqlite3.connect(f"file:{_uri_path(path)}?mode=rw", uri=True, timeout=30)
    except sqlite3.Error as e:
        raise StoreProblem(f"{where}: cannot open: {e}") from None
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        raise StoreProblem(_corrupt(where, str(e)) if _is_corrupt(e) else f"{where}: cannot open: {e}") from None
    finally:
        conn.close()
    if rows != [("ok",)]:
        raise StoreProblem(_corrupt(where, _first_message(rows)))


def _is_corrupt(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return "malformed" in str(e) or "not a database" in str(e)


def _corrupt(where: str, detail: str) -> str:
    return f"{where}: the database is corrupt ({detail}); restore it from a backup or re-import the documents"


def _first_message(rows: list[tuple[object, ...]]) -> str:
    """The first problem quick_check reports, on one line (its rows may hold several lines each)."""
    for row in rows:
        for line in str(row[0]).splitlines():
            line = line.strip()
            if line and not (line.startswith("***") and line.endswith("***")):
                return line if len(line) <= 200 else line[:200] + "..."
    return "quick_check found problems"


def _uri_path(path: str) -> str:
    """C{path} for a C{file:} URI (C{?} and C{#} in a file name must not end it)."""
    from urllib.parse import quote

    return quote(os.path.abspath(path))
