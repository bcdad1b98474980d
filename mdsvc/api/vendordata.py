# -*- test-case-name: tests.test_vendordata -*-
"""
Vendor data providers (spec §6): StaticJSON (a file), DynamicJSON (REST targets) and vendors'
plugins (L{IVendordataProviderFactory}), named in C{[api] vendordata_providers}.

StaticJSON reads its file when it changes (by mtime and size), not on every request; a missing or
broken file is logged with its reason and makes C{vendor_data.json} answer 404 instead of failing
every request of every instance as Nova does.  DynamicJSON calls its targets concurrently, each
bounded by the connect plus read timeout, so a dead target delays a guest by one timeout, not by
one per target.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from attrs import define, field, frozen
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from mdsvc.api.errors import MetadataError
from mdsvc.files import WatchedFile
from mdsvc.interfaces import IVendordataProvider, IVendordataProviderFactory
from mdsvc.model import Instance

BUILTIN = ("StaticJSON", "DynamicJSON")
"""The providers mdsvc has itself; any other name in C{vendordata_providers} is a plugin's."""


def vendordata_plugins() -> list[Any]:
    """The vendor data provider factories installed in C{mdsvc/plugins/} directories."""
    from mdsvc.plugins import installed

    return installed(IVendordataProviderFactory)


def vendordata_plugin(name: str, plugins: Any = None) -> Any:
    """
    The plugin factory of provider C{name} (default: among L{vendordata_plugins}).

    @raise ValueError: one line: no provider is named so (listing those available), or several are.
    """
    from mdsvc.plugins import named

    factories = list(vendordata_plugins() if plugins is None else plugins)
    factory = named(name, factories)
    if factory is None:
        available = list(BUILTIN) + sorted(f.name for f in factories)
        raise ValueError(f"unknown vendordata provider {name!r} (available: {', '.join(available)})")
    return factory


def check_providers(names: tuple[str, ...], plugins: Any = None) -> None:
    """
    Check, without building anything, that every name of C{[api] vendordata_providers} is a
    built-in provider or an installed plugin's.

    @raise ValueError: the line L{vendordata_plugin} raises for the first unknown name.
    """
    wanted = [name for name in names if name not in BUILTIN]
    if wanted:
        factories = list(vendordata_plugins() if plugins is None else plugins)
        for name in wanted:
            vendordata_plugin(name, factories)


@frozen
class StaticVendordata:
    """The StaticJSON data as loaded for one render: C{data}, or C{error} if the file is bad."""

    data: Any = field(factory=dict)
    error: str | None = None


@define
class StaticJSONFile:
    """
    The C{vendordata_jsonfile_path} file, parsed once per change (L{WatchedFile}).

    @ivar path: the file, or None for no file (the data is then C{{}}).
    """

    path: str | None
    _log = Logger()
    _file: WatchedFile[Any] | None = field(default=None, init=False)
    _current: StaticVendordata = field(factory=StaticVendordata, init=False)

    def __attrs_post_init__(self) -> None:
        if self.path:
            self._file = WatchedFile(self.path, _json)

    def load(self) -> StaticVendordata:
        """The file's data now (re-read only if its mtime or size changed); a bad file is logged once."""
        if self._file is None:
            return StaticVendordata({})
        loaded = self._file.load()
        if not loaded.changed:
            return self._current
        if loaded.error is not None:
            self._log.warn("vendordata_jsonfile_path[{path}]: {reason}", path=self.path, reason=loaded.error)
            self._current = StaticVendordata(error=f"vendordata_jsonfile_path[{self.path}]: {loaded.error}")
        else:
            self._log.info("loaded vendor data from {path}", path=self.path)
            self._current = StaticVendordata(loaded.value)
        return self._current


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise ValueError(f"failed to load json: {e}") from None


def parse_targets(targets: tuple[str, ...], log: Logger | None = None) -> list[tuple[str, str]]:
    """
    C{name@url} entries split at the first C{@}; nameless and duplicate names are skipped with a
    warning, as Nova does.
    """
    log = log or Logger()
    parsed: dict[str, str] = {}
    for target in targets:
        name, at, url = target.partition("@")
        if not at or not name:
            log.warn("Vendordata target {target} lacks a name. Skipping", target=target)
            continue
        if name in parsed:
            log.warn("Vendordata already contains an entry named {target}. Skipping", target=name)
            continue
        parsed[name] = url
    return list(parsed.items())


def dynamic_request_body(instance: Instance) -> bytes:
    """The JSON Nova POSTs to every DynamicJSON target."""
    return json.dumps({
        "project-id": instance.project_id,
        "instance-id": instance.uuid,
        "image-id": instance.image_id or "",
        "user-data": base64.b64encode(instance.user_data).decode("ascii") if instance.user_data is not None else None,
        "hostname": instance.hostname,
        "metadata": dict(instance.metadata),
        "boot-roles": instance.system_metadata.get("boot_roles", ""),
    }).encode("utf-8")


@implementer(IVendordataProvider)
@define
class DynamicJSON:
    """
    Calls every C{vendordata_dynamic_targets} entry for each C{vendor_data2.json} request.

    @ivar http: a treq C{HTTPClient} (its agent carries the connect timeout and TLS policy).
    """

    targets: list[tuple[str, str]]
    http: Any
    clock: IReactorTime
    connect_timeout: float = 5
    read_timeout: float = 5
    failure_fatal: bool = False
    name = "DynamicJSON"
    _log = Logger()

    def vendordata(self, instance: Instance) -> Deferred[dict[str, Any]]:
        """See L{IVendordataProvider.vendordata}: C{{target name: its JSON}}."""
        body = dynamic_request_body(instance)
        calls = [self._call(name, url, body) for name, url in self.targets]
        names = [n for n, _ in self.targets]
        d: Deferred[Any] = gatherResults(calls, consumeErrors=True)
        d.addCallback(lambda results: dict(zip(names, results, strict=True)))

        def unwrap(failure: Any) -> Any:
            from twisted.internet.defer import FirstError

            if failure.check(FirstError):
                return failure.value.subFailure
            return failure

        d.addErrback(unwrap)
        return d

    def _call(self, name: str, url: str, body: bytes) -> Deferred[Any]:
        headers = {
            b"Content-Type": [b"application/json"],
            b"Accept": [b"application/json"],
            b"User-Agent": [b"openstack-nova-vendordata"],
        }
        d = self.http.post(url, data=body, headers=headers)

        def read(response: Any) -> Deferred[Any]:
            if not 200 <= response.code < 300:
                raise ValueError(f"HTTP {response.code}")
            return response.content()

        def parse(content: bytes) -> Any:
            return json.loads(content) if content else {}

        def failed(failure: Any) -> Any:
            error = failure.getErrorMessage() or failure.type.__name__
            self._log.warn(
                "Error from dynamic vendordata service {service_name} at {url}: {error}", service_name=name, url=url, error=error
            )
            if self.failure_fatal:
                raise MetadataError(500, None, f"dynamic vendordata target {name} at {url} failed: {error}")
            return {}

        d.addCallback(read)
        d.addCallback(parse)
        d.addTimeout(self.connect_timeout + self.read_timeout, self.clock)
        d.addErrback(failed)
        return d


def merge_vendordata(parts: list[tuple[str, dict[str, Any]]], log: Logger | None = None) -> dict[str, Any]:
    """Merge providers' results in order; a key already present is dropped with a warning."""
    log = log or Logger()
    merged: dict[str, Any] = {}
    for _provider, part in parts:
        for key, value in part.items():
            if key in merged:
                log.warn("Removing duplicate metadata key: {key}", key=key)
                continue
            merged[key] = value
    return merged
