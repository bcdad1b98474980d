# -*- test-case-name: tests.test_nova_store -*-
"""
L{NovaInstanceStore}: the L{IInstanceStore} of C{[mdsvc] store = nova}, reading Nova's own
databases the way Nova's metadata API does, so that the api role can replace
C{nova-api-metadata} with a configuration change.

Every database call runs in the store's own thread pool (C{[mdsvc] database_threads} threads,
started and stopped with the service), never in the reactor's thread: a slow database delays
its guests, not the process.  Neutron is asked over Twisted's HTTP client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from mdsvc.cache import ExpiringCache
from mdsvc.interfaces import AmbiguousAddress, IInstanceStore, StoreUnavailable
from mdsvc.model import Instance
from mdsvc.reload import IReloadable
from mdsvc.store.nova import convert
from mdsvc.store.nova.cells import find_cell, format_db_url
from mdsvc.store.nova.database import Engines, read, write
from mdsvc.store.nova.neutron import NovaNeutron
from mdsvc.store.nova.password import PasswordRace, set_password
from mdsvc.store.nova.rows import InstanceRows, ensure_ec2_ids, missing_ec2_ids, read_instance

T = TypeVar("T")


@frozen
class NovaDatabases:
    """
    Where Nova's databases are (nova.conf's options).

    @ivar api_database: C{[api_database] connection}: the instance to cell mappings.
    @ivar database: C{[database] connection}: the cell read with C{local_metadata_per_cell}, or
        for an instance without a cell mapping; the defaults of cell mappings' templates.
    """

    api_database: str | None
    database: str | None
    local_metadata_per_cell: bool = False


class NovaReader:
    """
    The blocking part: one instance's rows, the password write; called in the store's threads.

    An instance's cell, once found in the API database, is kept C{placement_ttl} seconds (an
    instance changes cells only when moved across cells): a cache miss then costs no query in
    the API database.  An instance not found in its kept cell is looked up in the API database
    again at once.
    """

    _log = Logger()

    def __init__(self, databases: NovaDatabases, engines: Engines, placement_ttl: float = 60,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.databases = databases
        self.engines = engines
        self.placement_ttl = placement_ttl
        self._now = now
        self._placements: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def cell_url(self, uuid: str, fresh: bool = False) -> str | None:
        """
        The URL of the database holding C{uuid} (None: nowhere to look).

        @param fresh: ask the API database even when the cell is kept.
        """
        return self._cell(uuid, fresh)[0]

    def _cell(self, uuid: str, fresh: bool = False) -> tuple[str | None, bool]:
        """L{cell_url}, and whether it was the kept one."""
        databases = self.databases
        if databases.local_metadata_per_cell or databases.api_database is None:
            return databases.database, False
        now = self._now()
        if not fresh:
            with self._lock:
                kept = self._placements.get(uuid)
            if kept is not None and kept[0] > now:
                return kept[1], True
        placement = read(self.engines.get(databases.api_database), lambda conn: find_cell(conn, uuid), single=True)
        if not placement.mapped:
            self._log.warn("Instance mapping for {uuid} not found; cell setup is incomplete", uuid=uuid)
            return databases.database, False  # not kept: the mapping may come
        url = databases.database if placement.url is None else format_db_url(placement.url, databases.database)
        with self._lock:
            if len(self._placements) >= 100_000:
                self._placements = {k: v for k, v in self._placements.items() if v[0] > now}
            self._placements[uuid] = (now + self.placement_ttl, url)
        return url, False

    def rows(self, uuid: str) -> InstanceRows | None:
        """The rows of the live instance C{uuid} (its EC2 numbers made if missing), or None."""
        url, kept = self._cell(uuid)
        rows = read(self.engines.get(url), lambda conn: read_instance(conn, uuid)) if url is not None else None
        if rows is None and kept:
            moved, _ = self._cell(uuid, fresh=True)
            if moved is not None and moved != url:
                url = moved
                rows = read(self.engines.get(url), lambda conn: read_instance(conn, uuid))
        if rows is None or url is None:
            return None
        engine = self.engines.get(url)
        instance_missing, images_missing = missing_ec2_ids(rows)
        if instance_missing or images_missing:
            number, images = write(engine, lambda conn: ensure_ec2_ids(conn, uuid, instance_missing, images_missing))
            rows = InstanceRows(
                rows.instance, rows.extra, rows.network_info, rows.metadata, rows.system_metadata, rows.block_devices,
                number if instance_missing else rows.ec2_instance_id, {**rows.ec2_image_ids, **images},
            )
        return rows

    def set_password(self, uuid: str, password: str) -> bool:
        """See L{IInstanceStore.set_password}."""
        url = self.cell_url(uuid)
        if url is None:
            raise KeyError(uuid)
        try:
            return write(self.engines.get(url), lambda conn: set_password(conn, uuid, password))
        except PasswordRace:
            return False


@implementer(IInstanceStore, IReloadable)
class NovaInstanceStore(Service):
    """
    L{IInstanceStore} over Nova's databases and Neutron.

    @param reader: the blocking reads and writes.
    @param run: runs a blocking call and returns its Deferred (L{in_threads}: in the store's
        pool; tests pass a synchronous runner).
    @param neutron: Nova's questions to Neutron; None: no Neutron configured (no security
        groups, no remote-address or provider mode).
    @param clock: bounds each database call by the engines' timeout.
    @param address_ttl: seconds Neutron's answer for a guest's address is kept (remote-address
        mode: C{metadata_cache_expiration}); C{negative_ttl}, for an address no port holds.
    """

    name = "nova-store"
    options = frozenset({("api", "metadata_cache_expiration")})
    """What a SIGHUP applies (L{IReloadable}): how long Neutron's answers for addresses are kept.
    The databases, threads and timeout are the engines' and the pool's: they take a restart."""
    _log = Logger()

    def __init__(self, reader: NovaReader, run: Callable[..., Deferred[Any]], neutron: NovaNeutron | None,
                 clock: IReactorTime, threadpool: ThreadPool | None = None, address_ttl: float = 15,
                 negative_ttl: float = 2) -> None:
        self.reader = reader
        self._run = run
        self.neutron = neutron
        self.clock = clock
        self.threadpool = threadpool
        # Neutron's answer for an address, kept as the agent's lookup cache keeps its answers:
        # a guest asking from an address no port holds costs Neutron one query per 2 s, not one each
        self.addresses = ExpiringCache(clock, address_ttl, negative_ttl)

    def _in_thread(self, f: Callable[..., T], *args: Any) -> Deferred[T]:
        """
        C{f(*args)} in a database thread, answered within the timeout however many steps it
        takes (a pre-ping, a reconnect, the queries): past it the caller gets
        L{StoreUnavailable} while the thread ends on its own socket timeouts.
        """
        timeout = self.reader.engines.timeout

        def timed_out(result: Any, seconds: float) -> Any:
            if isinstance(result, Failure) and result.check(CancelledError):
                raise StoreUnavailable(f"no answer from Nova's database within {seconds:g} s ([mdsvc] database_timeout)")
            return result

        d: Deferred[T] = self._run(f, *args)
        return d.addTimeout(timeout, self.clock, onTimeoutCancel=timed_out)

    @classmethod
    def in_threads(cls, reader: NovaReader, neutron: NovaNeutron | None, reactor: Any, threads: int,
                   address_ttl: float = 15) -> NovaInstanceStore:
        """A store whose database calls run in a pool of C{threads} threads, started with the service."""
        pool = ThreadPool(minthreads=0, maxthreads=threads, name="mdsvc-nova-db")

        def run(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            return deferToThreadPool(reactor, pool, f, *args)

        return cls(reader, run, neutron, reactor, pool, address_ttl)

    def startService(self) -> None:
        """Start the database threads."""
        super().startService()
        if self.threadpool is not None:
            self.threadpool.start()

    def stopService(self) -> Deferred[None] | None:
        """Stop the threads (after the calls in progress) and close the pooled connections."""
        super().stopService()
        if self.threadpool is not None:
            self.threadpool.stop()
        self.reader.engines.dispose()
        return None

    def reload(self, config: Any) -> None:
        """
        See L{IReloadable.reload}: Neutron's answers for addresses kept C{metadata_cache_expiration}
        seconds from now on, those kept so far forgotten (as the API's render cache is).
        """
        self.addresses = ExpiringCache(self.clock, config.api.cache_expiration, self.addresses.negative_ttl)

    # -- IInstanceStore ------------------------------------------------------------------------

    def get(self, uuid: str) -> Deferred[Instance | None]:
        """See L{IInstanceStore.get}."""
        return Deferred.fromCoroutine(self._get(uuid))

    async def _get(self, uuid: str) -> Instance | None:
        rows: InstanceRows | None = await self._in_thread(self.reader.rows, uuid)
        if rows is None:
            return None
        groups = await self.neutron.security_groups(uuid) if self.neutron is not None else {}
        return convert.instance(rows, groups)

    def by_address(self, ip: str) -> Deferred[Instance | None]:
        """See L{IInstanceStore.by_address}: Neutron's port holding C{ip}, then its device."""
        return Deferred.fromCoroutine(self._by_address(ip))

    async def _by_address(self, ip: str) -> Instance | None:
        if self.neutron is None:
            raise StoreUnavailable("remote-address mode with store = nova needs Neutron ([neutron] auth_url)")
        neutron = self.neutron

        def ask(key: Any) -> Deferred[list[str] | None]:
            # [] (no port) is kept as "nothing there", for the short negative time
            return Deferred.fromCoroutine(neutron.devices_with_address(ip)).addCallback(lambda found: found or None)

        devices = await self.addresses.get(ip, ask) or []
        if len(devices) > 1:
            raise AmbiguousAddress(ip, devices)
        if not devices:
            return None
        self._log.info("Fixed IP {ip} translates to instance UUID {uuid}", ip=ip, uuid=devices[0])
        return await self._get(devices[0])

    def by_provider(self, provider_id: str, ip: str) -> Deferred[list[tuple[str, str | None]] | None]:
        """See L{IInstanceStore.by_provider}: the provider's subnets and ports in Neutron."""
        if self.neutron is None:
            return Deferred.fromCoroutine(self._no_neutron())
        return Deferred.fromCoroutine(self.neutron.provider_ports(provider_id, ip))

    async def _no_neutron(self) -> None:
        raise StoreUnavailable("provider mode with store = nova needs Neutron ([neutron] auth_url)")

    def set_password(self, uuid: str, password: str) -> Deferred[bool]:
        """See L{IInstanceStore.set_password}: Nova's four chunks, written once (L{set_password})."""
        return self._in_thread(self.reader.set_password, uuid, password)
