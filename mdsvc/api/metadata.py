# -*- test-case-name: tests.test_api_render -*-
"""
L{InstanceMetadata}: everything one instance's requests are answered from, built once per cache
miss, and the path resolution of spec §2.5 over it.

The same object renders the files of a config drive, so HTTP and drive never drift.  Documents
are rendered to bytes the first time a version asks for them and kept; per request only the
C{random_seed} is spliced in and C{local-ipv4} filled from the request address when the instance
has no fixed IPv4.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from attrs import define, field, frozen

from mdsvc.api import openstack as ostack
from mdsvc.api.ec2 import LOCAL_IPV4_FROM_REQUEST, ec2_meta_data
from mdsvc.api.errors import MetadataError, not_found
from mdsvc.api.identity import identity_tree
from mdsvc.api.injected import InterfacesTemplate
from mdsvc.api.network_data import network_data
from mdsvc.api.vendordata import StaticVendordata
from mdsvc.api.versions import (
    EC2_VERSIONS,
    GRIZZLY,
    HAVANA,
    NEWTON_TWO,
    ec2_at_least,
    ec2_version,
    openstack_listing,
    openstack_version,
)
from mdsvc.http import HTTPResponse
from mdsvc.model import Instance

TEXT = b"text/plain; charset=UTF-8"
JSON = b"application/json"
HTML = b"text/html; charset=UTF-8"

EC2_VERSION_LIST = "\n".join(EC2_VERSIONS + ("latest",)).encode("ascii")


@frozen
class Answer:
    """
    A successful response: body bytes, their content type, and any other headers (the token
    answer's C{X-aws-ec2-metadata-token-ttl-seconds}).
    """

    body: bytes
    content_type: bytes = TEXT
    headers: tuple[tuple[bytes, bytes], ...] = ()
    _response: list[HTTPResponse] = field(factory=list, init=False, eq=False, repr=False)
    """The HTTP response, once made (in a list: the class is frozen)."""

    def response(self) -> HTTPResponse:
        """This answer as an HTTP 200."""
        if not self._response:
            self._response.append(HTTPResponse(200, ((b"Content-Type", self.content_type), *self.headers), self.body))
        return self._response[0]


@frozen
class Password:
    """The path is the C{password} endpoint; the resource handles the method."""


@frozen
class VendorData2:
    """The path is C{vendor_data2.json}; the resource gathers the providers asynchronously."""

    version: str


def dumps(value: Any) -> bytes:
    """Python-json defaults, as Nova: C{", "} / C{": "}, insertion order, C{\\uXXXX} escapes."""
    return json.dumps(value).encode("ascii")


def render_value(value: Any) -> bytes:
    """The EC2 printer of spec §3.1 (used for every listing and EC2 value)."""
    if isinstance(value, dict):
        lines = []
        for key in sorted(value):
            if key == "_name":
                continue
            child = value[key]
            if isinstance(child, dict):
                lines.append(child["_name"] if "_name" in child else f"{key}/")
            else:
                lines.append(key)
        return "\n".join(lines).encode("utf-8")
    if isinstance(value, list):
        return "\n".join(str(v) for v in value).encode("utf-8")
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("utf-8")


def random_seed() -> str:
    """512 fresh random bytes, base64 (684 characters): Nova's C{random_seed}."""
    return base64.b64encode(os.urandom(512)).decode("ascii")


_SEED_MARK = json.dumps(ostack.RANDOM_SEED).encode("ascii")
_NEEDS_ADDRESS = Answer(b"")
"""Stands for local-ipv4 from the request's address: answered per request, never cached."""


@define
class InstanceMetadata:
    """
    One instance's metadata, as a render cache entry.

    @ivar static_vendordata: the StaticJSON data as of this build, or None when StaticJSON is not
        among C{vendordata_providers}.
    @ivar interfaces: with C{[DEFAULT] flat_injected}, the interfaces template to render
        (C{network_config}, C{/openstack/content/0000}); None without.
    @ivar aws_identity: the EC2 versions that have it (2009-04-04, C{latest}) carry AWS's
        C{dynamic/instance-identity/document} (L{mdsvc.api.identity}: with session tokens on).
    """

    instance: Instance
    dhcp_domain: str
    static_vendordata: StaticVendordata | None = None
    interfaces: InterfacesTemplate | None = None
    aws_identity: bool = False
    _content: dict[str, bytes] | None = field(default=None, init=False, repr=False)
    _ec2_trees: dict[str, dict[str, Any]] = field(factory=dict, init=False, repr=False)
    _meta_data: dict[str, bytes] = field(factory=dict, init=False, repr=False)
    _network_data: bytes | None = field(default=None, init=False, repr=False)
    _answers: dict[tuple[tuple[str, ...], str], Any] = field(factory=dict, init=False, repr=False)
    """Answers by path, for everything that is the same on every request of this entry."""

    # -- documents ----------------------------------------------------------------------------

    def content(self) -> dict[str, bytes]:
        """
        C{/openstack/content/<key>} as the service has it: C{0000} the rendered interfaces
        template when C{flat_injected} renders one, else nothing (injected files are on drives only).
        """
        if self._content is None:
            rendered = self.interfaces.render(self.instance) if self.interfaces is not None else None
            self._content = {} if rendered is None else {"0000": rendered.encode("utf-8")}
        return self._content

    def network_config(self) -> dict[str, str] | None:
        """C{meta_data.json}'s C{network_config}: where the rendered template is, if there is one."""
        if not self.content():
            return None
        return {"name": "network_config", "content_path": "/content/0000"}

    def ec2_tree(self, version: str) -> dict[str, Any]:
        """C{{"meta-data": ..., "user-data": ...}} of EC2 C{version} (may hold the local-ipv4 marker)."""
        tree = self._ec2_trees.get(version)
        if tree is None:
            tree = {"meta-data": ec2_meta_data(self.instance, version, self.dhcp_domain)}
            if self.instance.user_data is not None:
                tree["user-data"] = self.instance.user_data
            if self.aws_identity and ec2_at_least(version, "2009-04-04"):
                tree["dynamic"] = identity_tree(self.instance)
            self._ec2_trees[version] = tree
        return tree

    def ec2_meta_data_json(self, version: str, address: str | None = None) -> bytes:
        """The EC2 C{meta-data} dict as JSON (the config drive's C{ec2/<version>/meta-data.json})."""
        md = dict(self.ec2_tree(version)["meta-data"])
        if md.get("local-ipv4") is LOCAL_IPV4_FROM_REQUEST:
            md["local-ipv4"] = address
        return dumps(md)

    def meta_data_json(
        self, version: str, seed: Callable[[], str] = random_seed, *,
        files: list[dict[str, str]] | None = None, extra: dict[str, Any] | None = None,
    ) -> bytes:
        """
        C{meta_data.json} of OpenStack C{version}, with a fresh C{random_seed}.

        @param files: config drive only: the injected files' C{{"path", "content_path"}}.
        @param extra: config drive only: C{{"admin_pass": ...}}.
        """
        network_config = self.network_config()
        if files or extra:
            # (meta_data embeds the seed only from GRIZZLY on)
            return dumps(ostack.meta_data(
                self.instance, version, self.dhcp_domain, files=files, extra=extra, network_config=network_config, random_seed=seed(),
            ))
        template = self._meta_data.get(version)
        if template is None:
            template = dumps(ostack.meta_data(self.instance, version, self.dhcp_domain, network_config=network_config))
            self._meta_data[version] = template
        if version >= GRIZZLY:
            return template.replace(_SEED_MARK, b'"' + seed().encode("ascii") + b'"', 1)
        return template

    def network_data_json(self) -> bytes:
        """C{network_data.json}."""
        if self._network_data is None:
            self._network_data = dumps(network_data(self.instance))
        return self._network_data

    def vendor_data_json(self) -> bytes:
        """C{vendor_data.json}: the StaticJSON data; 404 when StaticJSON is off or its file is bad."""
        static = self.static_vendordata
        if static is None:
            raise not_found("vendor_data.json: StaticJSON is not in [api] vendordata_providers")
        if static.error is not None:
            raise not_found(f"vendor_data.json: {static.error}")
        return dumps(static.data)

    # -- resolution (spec §2.5) -----------------------------------------------------------------

    def resolve(self, segments: tuple[str, ...], address: str | None, today: str) -> Answer | Password | VendorData2:
        """
        Answer the normalised path C{segments} (never empty: the root is answered before
        identification).

        @param address: the request's address, for C{local-ipv4} of an instance without IPv4.
        @param today: the UTC date as C{YYYY-MM-DD}, for the OpenStack version listing.
        @raise MetadataError: 404 for anything that is not there.
        """
        key = (tuple(segments), today)
        known = self._answers.get(key)
        if known is not None:
            return known
        if segments[0] == "openstack":
            answer = self._resolve_openstack(segments[1:], today)
        else:
            answer = self._resolve_ec2(segments[1:] if segments[0] == "ec2" else segments, address)
            if answer is _NEEDS_ADDRESS:
                return Answer(render_value(address))
        # meta_data.json carries a fresh random_seed per request; a bounded cache per entry
        if segments[-1] != "meta_data.json" and len(self._answers) < 256:
            self._answers[key] = answer
        return answer

    def _resolve_ec2(self, rest: tuple[str, ...], address: str | None) -> Answer:
        if not rest:
            return Answer(EC2_VERSION_LIST)
        version = ec2_version(rest[0])
        if version is None:
            raise not_found(f"unknown EC2 version {rest[0]!r}")
        node: Any = self.ec2_tree(version)
        for depth, segment in enumerate(rest[1:], 2):
            if not isinstance(node, dict) or segment not in node:
                raise not_found(f"no {'/'.join(rest[: depth])!r} in EC2 version {rest[0]}")
            node = node[segment]
        if node is LOCAL_IPV4_FROM_REQUEST:
            return _NEEDS_ADDRESS
        return Answer(render_value(node))

    def _resolve_content(self, rest: tuple[str, ...]) -> Answer:
        """C{/openstack/content/<key>}: no listing, nothing deeper (spec §2.4.9)."""
        data = self.content().get(rest[0]) if len(rest) == 1 else None
        if data is None:
            raise not_found(f"no content {'/'.join(rest)!r} (injected files are only on config drives)")
        return Answer(data, TEXT)

    def _resolve_openstack(self, rest: tuple[str, ...], today: str) -> Answer | Password | VendorData2:
        if not rest:
            return Answer(render_value(openstack_listing(today)))
        if rest[0] == "content":
            return self._resolve_content(rest[1:])
        version = openstack_version(rest[0])
        if version is None:
            raise not_found(f"unknown OpenStack version {rest[0]!r}")
        name = "/".join(rest[1:])
        has_user_data = self.instance.user_data is not None
        if name in ("", "version"):
            return Answer(render_value(ostack.version_listing(version, has_user_data)))
        if name == "meta_data.json":
            return Answer(self.meta_data_json(version), JSON)
        if name == "user_data":
            if not has_user_data:
                raise not_found("the instance has no user data")
            return Answer(self.instance.user_data, TEXT)  # type: ignore[arg-type]
        if name == "network_data.json":
            return Answer(self.network_data_json(), TEXT)
        if name == "password" and version >= GRIZZLY:
            return Password()
        if name == "vendor_data.json" and version >= HAVANA:
            return Answer(self.vendor_data_json(), JSON)
        if name == "vendor_data2.json" and version >= NEWTON_TWO:
            return VendorData2(version)
        raise not_found(f"no {name!r} in OpenStack version {rest[0]}")


_NORMALISED: dict[bytes, tuple[str, ...] | None] = {}


def normalise_path(raw_path: bytes) -> tuple[str, ...] | None:
    """
    The segments of a request path after Nova's normalisation (spec §2.5): percent-decoded,
    C{.}/C{..} resolved, duplicate and trailing slashes dropped.  Any number of leading slashes
    counts as one, so C{//latest/...} is C{/latest/...} (the AWS JS SDK sends it).  Remembered
    per path (a few thousand at most): a boot asks the same thirty paths as every other.

    @return: None for the root (C{/}), else the segments.
    @raise MetadataError: 400 for a path that is not UTF-8.
    """
    try:
        return _NORMALISED[raw_path]
    except KeyError:
        pass
    segments = _normalise(raw_path)
    if len(_NORMALISED) >= 4096:
        _NORMALISED.clear()
    _NORMALISED[raw_path] = segments
    return segments


def _normalise(raw_path: bytes) -> tuple[str, ...] | None:
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise MetadataError(400, "The request path is not valid UTF-8.", "request path is not UTF-8") from None
    if "\x00" in path:
        raise MetadataError(400, "The request path contains a NUL character.", "request path contains NUL")
    normalised = posixpath.normpath("/" + path.lstrip("/"))
    segments = tuple(s for s in normalised.split("/") if s)
    return segments or None
