# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin's options and service tree: one role table, wiring only.

C{twistd -n mdsvc --role api --config-file FILE...} and C{MDSVC_CONFIG=FILE twistd -ny tac/api.tac}
build the same tree through L{makeService}.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage

from mdsvc.api.factory import app_from_config
from mdsvc.api.handler import APIHandler
from mdsvc.config import NODE_ROLES, Config, ConfigError, config_files, given_sources, load_config, located
from mdsvc.listen import Listening, check_endpoint, listen_service
from mdsvc.store import open_store
from mdsvc.store.startup import StoreProblem, prepare_configured_store

log = Logger()

ROLES = tuple(NODE_ROLES)


class Options(usage.Options):
    """
    C{twistd mdsvc} options: the role and the configuration files, loaded and checked here.

    Every problem the configuration gives startup (a bad value, an unusable store, an unknown
    lookup backend or socket user) is a L{usage.UsageError} of one line naming the file and
    line, section and option. twistd prints this object before that line: after such a problem
    it is one line too (L{getUsage}), not the whole usage text of a command line that was right.
    """

    synopsis = "[--role ROLE] [--config-file FILE]... [--config-dir DIR]..."

    optParameters = [
        ["role", "r", "all-in-one", "Node role: " + " | ".join(ROLES) + "."],
        ["worker-fd", None, None, "(internal) Serve the API's port at this descriptor, as a worker of metadata_workers.", int],
        ["worker-index", None, 0, "(internal) The worker's number.", int],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["config-files"] = []
        self["config-dirs"] = []
        self._startupProblem = False

    # The docstrings of opt_ methods are their --help texts, as written: one line each.

    def opt_config_file(self, path: str) -> None:
        """INI file (nova.conf, metadata_agent.ini names); repeat it: later files win, option by option. Default: $MDSVC_CONFIG, else the embedded defaults."""  # noqa: E501
        self["config-files"].append(path)

    def opt_config(self, path: str) -> None:
        """One configuration file, as --config-file."""
        self.opt_config_file(path)

    opt_c = opt_config

    def opt_config_dir(self, directory: str) -> None:
        """Every *.conf file of the directory, in sorted order, after the --config-file files."""
        self["config-dirs"].append(directory)

    def postOptions(self) -> None:
        """Validate the role, load the configuration and check what the role will open."""
        if self["role"] not in ROLES:
            raise usage.UsageError(f"unknown role {self['role']!r} (allowed: {', '.join(ROLES)})")
        try:
            self["parsed"] = load_config(given_sources(self["config-files"], self["config-dirs"], os.environ))
        except ConfigError as e:
            raise self._stopped(str(e)) from None
        config = self["parsed"]
        try:
            check_startup(self["role"], config)
        except ConfigError as e:
            raise self._stopped(str(e)) from None
        except (StoreProblem, ValueError, OSError) as e:
            raise self._stopped(f"{config.source or 'defaults'}: {e}") from None

    def _stopped(self, problem: str) -> usage.UsageError:
        """The error for a startup problem (one line), remembering that it is not one of usage."""
        self._startupProblem = True
        return usage.UsageError(f"mdsvc: {problem}")

    def getUsage(self, width: int | None = None) -> str:
        """
        The usage text; after a startup problem, a line saying mdsvc did not start (twistd
        prints it with the problem's own line, which says why).
        """
        if self._startupProblem:
            return "mdsvc did not start."
        return super().getUsage(width)


def check_startup(role: str, config: Config) -> None:
    """
    What would stop the role's services from being built, found before twistd goes on: the
    names given to plugins (L{plugin_problems}), the store (private modes, a sound database)
    and the agent's socket owners.

    @raise ConfigError: a name no installed plugin has, a feature of mdsvc's own document stores
        asked of another, or C{store = nova} without what it needs (one line naming the file and
        line).
    @raise StoreProblem: the store cannot be used.
    @raise ValueError: an unknown user or group (one line).
    """
    problems = plugin_problems(config, NODE_ROLES[role])
    if problems:
        raise ConfigError(problems[0], problems)
    if uses_store(role, config):
        # before anything reads it: private modes, a sound database (one line if not)
        prepare_configured_store(config)
    backend_checks(config, NODE_ROLES[role])
    if "agent" in NODE_ROLES[role]:
        from mdsvc.agent.server import socket_mode

        agent = config.agent
        socket_mode(agent.socket_mode, agent.proxy_user, agent.proxy_group)


def backend_checks(config: Config, parts: frozenset[str]) -> None:
    """
    The startup checks of the backends the parts C{parts} of a node would open that change
    nothing on the host (unlike the store's preparation): C{store = nova}'s databases and
    Neutron, C{lookup = ovn}'s library and TLS files.

    @raise ConfigError: for C{store = nova} (naming the file and line).
    @raise ValueError: for C{lookup = ovn} (one line).
    """
    if config.store == "nova" and "api" in parts:
        from mdsvc.store.nova import check_nova_store

        try:
            check_nova_store(config)  # the databases and Neutron it needs
        except ValueError as e:
            raise ConfigError(str(e)) from None  # (names the file and line already)
    if "agent" in parts and config.agent.lookup == "ovn":  # the ovs library, the files of ssl: members
        from mdsvc.lookup.ovn import check_ovn

        check_ovn(config.agent.ovn)


def reload_problems(config: Config, parts: frozenset[str]) -> list[str]:
    """
    What makes a SIGHUP refuse a new configuration (L{mdsvc.reload.Reloader}): the problems
    startup would have with it that can be found without changing anything, L{plugin_problems}
    then L{backend_checks}, one line each (a store or replica that would not start after the
    next restart is refused now, not only named as taking effect then).
    """
    problems = plugin_problems(config, parts)
    if problems:
        return problems
    try:
        backend_checks(config, parts)
    except ConfigError as e:
        return [str(e)]
    except ValueError as e:
        return [f"{config.source or 'defaults'}: {e}"]
    return []


def plugin_problems(config: Config, parts: frozenset[str]) -> list[str]:
    """
    The problems of what the configuration names for the parts C{parts} of a node (C{api},
    C{agent}), one line each naming the file and line: L{unknown_names}, and what only mdsvc's
    own document stores do (the demo, C{lookup = store}: C{sqlite:PATH} and database servers'
    URLs) asked of another store (C{nova}, a vendor's).
    """
    from mdsvc.store import document_store

    problems = unknown_names(config, parts)
    if "api" in parts:
        from mdsvc.api.tokens import config_problems

        problems += config_problems(config)
    agent_store = "agent" in parts and config.agent.lookup == "store"
    own = "mdsvc's own document store (sqlite:PATH or a database server's URL)"
    documents = document_store(config.store)
    if "api" in parts and config.demo and not documents:
        problems.append(f"{located(config, 'mdsvc', 'demo')}: the demo instance is imported into {own}, "
                        f"not into store = {config.store}")
    if agent_store and not documents:
        problems.append(f"{located(config, 'mdsvc', 'lookup')}: lookup = store reads {own}, not store = {config.store}")
    return problems


def unknown_names(config: Config, parts: frozenset[str]) -> list[str]:
    """
    The instance store, vendordata providers and lookup backend the parts C{parts} of a node
    (C{api}, C{agent}) would use that neither mdsvc nor an installed plugin has, one line each
    naming the file and line and those available.
    """
    from mdsvc.api.vendordata import check_providers
    from mdsvc.lookup import check_lookup
    from mdsvc.store import check_store

    checks: list[tuple[str, str, Callable[[Any], None], Any]] = []
    agent_store = "agent" in parts and config.agent.lookup == "store"
    if "api" in parts or agent_store:
        checks.append(("mdsvc", "store", check_store, config.store))
    if "api" in parts:
        checks.append(("api", "vendordata_providers", check_providers, config.api.vendordata_providers))
    if "agent" in parts:
        checks.append(("mdsvc", "lookup", check_lookup, config.agent.lookup))
    problems = []
    for section, name, check, value in checks:
        try:
            check(value)
        except ValueError as e:
            problems.append(f"{located(config, section, name)}: {e}")
    return problems


def tac_service(role: str) -> IService:
    """
    The service of C{tac/ROLE.tac}: the role's, configured by C{$MDSVC_CONFIG}. A startup problem
    ends the process with its one line (twistd -y prints a traceback for a L{usage.UsageError}
    raised by a .tac, as for any other exception but C{SystemExit}).
    """
    options = Options()
    try:
        options.parseOptions(["--role", role])
    except usage.UsageError as e:
        raise SystemExit(str(e)) from None
    return makeService(options)


def uses_store(role: str, config: Config) -> bool:
    """Whether a role opens the instance store: the API always, the agent with C{lookup = store}."""
    return role in ("api", "all-in-one") or (role in ("agent", "network-node") and config.agent.lookup == "store")


def _http(
    config: Config, handler: Any, reactor: Any, name: str, parts: dict[str, Any], guest_facing: bool = True,
    hop: str | None = None, meter_answers: bool = False, scope: str | None = None,
) -> Any:
    """
    The HTTP factory for one of our handlers, with an access log line per request if asked.

    @param hop: the hop whose meter notes the protocol's refusals (and every answer, with
        C{meter_answers}: a handler that does not note its answers itself).
    """
    from mdsvc.http import AccessLog, LeanHTTPFactory

    if config.access_log:
        handler = AccessLog(handler)
    limits = config.limits
    meter = _metrics(parts, reactor).hop(hop) if hop is not None else None
    factory = LeanHTTPFactory(handler, reactor, request_timeout=limits.request_timeout, idle_timeout=limits.idle_timeout,
                              name=name, limits=_connection_limits(config, reactor, parts), guest_facing=guest_facing,
                              meter=meter, meter_answers=meter_answers, scope=scope)
    parts.setdefault("factories", []).append(factory)  # drained when the node stops (mdsvc.drain)
    return factory


def _metrics(parts: dict[str, Any], reactor: Any) -> Any:
    """The process's L{mdsvc.metrics.NodeMetrics} (a stand-alone one when a part is built alone, as in tests)."""
    if "metrics" not in parts:
        from mdsvc.metrics import NodeMetrics

        parts["metrics"] = NodeMetrics("-", reactor)
    return parts["metrics"]


def _readiness(parts: dict[str, Any], reactor: Any) -> Any:
    """The process's L{mdsvc.readiness.Readiness}, its role's dependencies added by each part."""
    if "readiness" not in parts:
        from mdsvc.readiness import Readiness

        parts["readiness"] = Readiness(reactor)
    return parts["readiness"]


def _store_shown(url: str) -> str:
    """C{[mdsvc] store} as /readyz and the doctor name it: a database server's URL with its password masked."""
    from mdsvc.store.sql import is_sql_url

    if not is_sql_url(url):
        return url
    from mdsvc.store.nova.database import shown

    return shown(url)


def _backends(parts: dict[str, Any] | None, top: MultiService) -> MultiService:
    """
    Where a backend service of a role goes: under the node's L{mdsvc.drain.Drain}
    (C{parts["backends"]}), which stops it after the drain, else under the role's own C{top}.
    """
    backends = parts.get("backends") if parts is not None else None
    return backends if backends is not None else top


def _connection_limits(config: Config, reactor: Any, parts: dict[str, Any]) -> Any:
    """The process's one L{ConnectionLimits}: made with the first listener, shared by every one."""
    from mdsvc.limits import ConnectionLimits, connection_budget, raise_descriptor_limit

    if "limits" not in parts:
        soft, hard = raise_descriptor_limit()
        total = connection_budget(config.limits.max_connections, soft)
        if config.limits.max_connections and total < config.limits.max_connections:
            log.warn("[mdsvc] max_connections = {wanted} does not fit the open-files limit ({soft}); using {total} "
                     "(raise LimitNOFILE)", wanted=config.limits.max_connections, soft=soft, total=total)
        parts["limits"] = ConnectionLimits(reactor, config.limits.max_connections_per_guest, total)
        if "metrics" in parts:
            parts["metrics"].limits = parts["limits"]
    return parts["limits"]


def build_api(config: Config, reactor: Any, parts: dict[str, Any] | None = None) -> IService:
    """The metadata API: instance store, render cache, vendordata and the HTTP listener."""
    from mdsvc.metered import MeteredStore
    from mdsvc.readiness import store_check

    api = config.api
    parts = parts if parts is not None else {}
    metrics = _metrics(parts, reactor)
    try:
        store = open_store(config.store, reactor, config)
        app = app_from_config(config, MeteredStore(store, metrics, config.store.partition(":")[0]), reactor)
    except ConfigError as e:
        # a vendor's own section with a bad $name (mdsvc.config.vendor_options): its line names
        # the file and line already
        raise SystemExit(f"mdsvc: {e}") from None
    except (ValueError, OSError) as e:
        # What only building shows (a vendor plugin refusing its configuration): one line, as
        # in build_agent.
        raise SystemExit(f"mdsvc: {config.source or 'defaults'}: {e}") from None
    if api.service_metadata_proxy and not api.shared_secret:
        log.warn("metadata_proxy_shared_secret is not configured, the metadata information returned by the proxy cannot be trusted")
    app.static_file.load()  # logs a bad file at startup rather than at the first guest
    if app.interfaces is not None:
        app.interfaces.load()  # (the same for the interfaces template)
    parts["app"] = app
    metrics.caches["render"] = app.cache
    _readiness(parts, reactor).add(f"instance store {_store_shown(config.store)}", store_check(store))
    top = MultiService()
    for part in (store, *app.built_providers.values()):
        if IService.providedBy(part):
            # a store or provider with threads or connections to open and close (store = nova, a
            # vendor's): started before the listener, stopped once the requests in flight are
            # answered (the node's backends, L{mdsvc.drain.Drain}), else after the listener
            IService(part).setServiceParent(_backends(parts, top))
    if config.demo and not parts.get("worker_index"):
        from mdsvc.store.demo import DemoSeed
        from mdsvc.store.threaded import DocumentStore

        if isinstance(store, DocumentStore):  # always: sqlite or a database server (check_startup refuses others)
            DemoSeed(store.documents).setServiceParent(top)
    # Guests reach the API themselves only when it identifies them by address; behind agents or
    # a load balancer a few sources carry every guest's requests.
    guest_facing = not api.service_metadata_proxy and not api.use_forwarded_for
    handler = APIHandler(app, config.api.debug, meter=metrics.hop("api"))
    from mdsvc.api.reload import APIReload
    from mdsvc.reload import IReloadable

    parts.setdefault("reloadable", []).append(APIReload(app, handler, config, reactor))
    if IReloadable.providedBy(store):  # a store that applies some options itself (store = nova)
        parts["reloadable"].append(store)
    site = _http(config, handler, reactor, "metadata-api", parts, guest_facing, hop="api")
    where = f"{_source(config)}: {api.listen_option}"
    if parts.get("worker_fd") is not None:
        # a worker of metadata_workers: the supervisor's socket, shared with the other workers
        from twisted.application.internet import StreamServerEndpointService

        from mdsvc.listen import Listening
        from mdsvc.workers import adopted_endpoint

        shared = Listening(where)
        StreamServerEndpointService(adopted_endpoint(reactor, parts["worker_fd"]), site).setServiceParent(shared)
        shared.setServiceParent(top)
    else:
        listen_service(api.listen_endpoint, site, reactor, where).setServiceParent(top)
    return top


def build_agent(config: Config, reactor: Any, parts: dict[str, Any]) -> IService:
    """The metadata agent: lookup (cached), signing, forwarding, on its UNIX socket."""
    from mdsvc.agent.forwarder import APIForwarder, api_pool
    from mdsvc.agent.handler import MetadataAgent
    from mdsvc.agent.ratelimit import rate_limiter
    from mdsvc.agent.reload import AgentReload
    from mdsvc.agent.server import AgentHandler, UnixSocketListener, socket_mode
    from mdsvc.api.inprocess import InProcessAPI
    from mdsvc.httpclient import PoolService
    from mdsvc.lookup import build_lookup
    from mdsvc.lookup.cache import CachingLookup
    from mdsvc.lookup.replicated import IReplicatedLookup
    from mdsvc.metered import MeteredLookup
    from mdsvc.readiness import api_check, lookup_check

    agent = config.agent
    metrics = _metrics(parts, reactor)
    readiness = _readiness(parts, reactor)
    try:
        backend = build_lookup(agent.lookup, config.store, reactor, agent.neutron, ovn_config=agent.ovn)
        mode = socket_mode(agent.socket_mode, agent.proxy_user, agent.proxy_group)
        pool = api_pool(agent, reactor)
    except (ValueError, OSError) as e:
        # What only building shows (a vendor plugin refusing its ARG, unreadable TLS files). Not a
        # UsageError: twistd and twist print a traceback for one raised by makeService; what can
        # be found earlier is, as a UsageError of Options (check_startup).
        raise SystemExit(f"mdsvc: {config.source or 'defaults'}: {e}") from None
    readiness.add(f"lookup backend {agent.lookup}", lookup_check(backend))
    parts["lookup"] = backend
    lookup: Any = MeteredLookup(backend, metrics)
    if agent.cache_enabled:
        lookup = CachingLookup(lookup, reactor, agent.cache_ttl, agent.cache_negative_ttl)
        metrics.caches["lookup"] = lookup
        if IReplicatedLookup.providedBy(backend):  # a live replica (ovn): each change reaches the cache
            lookup = backend.front(lookup, reactor, max(agent.cache_ttl, agent.cache_negative_ttl))
    limit = agent.rate_limit
    limiter = rate_limiter(limit, reactor)
    if "app" in parts:
        # all-in-one: the API is in this process; signed requests go straight to its code
        api: Any = InProcessAPI(parts["app"], meter=metrics.hop("api"))
        metrics.stages["agent_to_api"] = metrics.hop("api").latency  # the same wait, noted once
    else:
        api = APIForwarder(pool, agent.api_url, agent.api_timeout)
        metrics.pools["api"] = pool
        readiness.add(f"metadata API at {agent.api_url}", api_check(pool, agent.api_timeout))
    handler = MetadataAgent(
        lookup, api, agent.shared_secret, limiter, limit.ip_version, clock=reactor,
        relookup_interval=max(agent.cache_negative_ttl, 1), max_in_flight=config.limits.max_connections_per_guest,
        meter=metrics.hop("agent"), time_api="app" not in parts,
    )
    parts["agent"] = handler
    metrics.agents.append(handler)
    parts.setdefault("reloadable", []).append(AgentReload(handler, config, reactor))
    site = _http(config, AgentHandler(handler, metrics.hop("agent")), reactor, "metadata-agent", parts, hop="agent")
    top = MultiService()
    if IReplicatedLookup.providedBy(backend):
        # the replica is kept while the agent runs, and until its requests in flight are answered
        backend.service.setServiceParent(_backends(parts, top))
    socket = Listening(f"{_source(config)}: [DEFAULT] metadata_proxy_socket {agent.socket_path}")
    UnixSocketListener(reactor, agent.socket_path, site, agent.backlog, mode).setServiceParent(socket)
    socket.setServiceParent(top)
    if agent.listen_endpoint:
        where = f"{_source(config)}: [mdsvc] agent_endpoint {agent.listen_endpoint}"
        listen_service(agent.listen_endpoint, site, reactor, where).setServiceParent(top)
    PoolService(pool).setServiceParent(top)
    return top


def build_proxy(config: Config, reactor: Any, parts: dict[str, Any]) -> IService:
    """Namespace proxies, calling the agent in-process when it runs here, else over its socket."""
    from mdsvc.httpclient import PoolService
    from mdsvc.proxy.http import AgentSocketUpstream, NamespaceProxyHandler
    from mdsvc.proxy.service import NamespaceProxies
    from mdsvc.readiness import socket_check

    proxy = config.proxy
    metrics = _metrics(parts, reactor)
    top = MultiService()
    if "agent" in parts:
        upstream: Any = parts["agent"]  # the agent in this process: no socket, no HTTP, just a call
        upstream.front = metrics.hop("proxy")  # within the listener's call: its times are the agent's
    else:
        upstream = AgentSocketUpstream(reactor, config.agent.socket_path, reactor, proxy.agent_timeout)
        PoolService(upstream.pool).setServiceParent(top)
        metrics.pools["agent"] = upstream.pool
        _readiness(parts, reactor).add(f"agent socket {config.agent.socket_path}",
                                       socket_check(reactor, config.agent.socket_path, min(proxy.agent_timeout, 5)))
    if proxy.namespaces != "none":
        proxies = NamespaceProxies(
            reactor, upstream, directory=proxy.netns_dir, wanted=proxy.namespaces, interval=proxy.rescan_interval,
            router_port=proxy.router_port,
            site=lambda handler, name: _http(config, handler, reactor, name, parts, hop="proxy", meter_answers=True,
                                             scope=handler.ident),
        )
        proxies.setServiceParent(top)
        metrics.proxies.append(proxies)
        parts["proxies"] = proxies
    metrics.fixed_listeners += len(proxy.listeners)
    for listener in proxy.listeners:
        site = _http(config, NamespaceProxyHandler(listener.kind, listener.id, upstream), reactor,
                     f"metadata-proxy {listener.kind} {listener.id}", parts, hop="proxy", meter_answers=True, scope=listener.id)
        where = f"{_source(config)}: [proxy] listeners {listener.kind} {listener.id} {listener.endpoint}"
        listen_service(listener.endpoint, site, reactor, where).setServiceParent(top)
    return top


def _source(config: Config) -> str:
    """The configuration files, for messages (C{defaults} when there are none)."""
    return config.source or "defaults"


def _api(config: Config, reactor: Any, parts: dict[str, Any]) -> IService:
    return build_api(config, reactor, parts)


SERVICES_BY_ROLE: dict[str, tuple[Callable[[Config, Any, dict[str, Any]], IService], ...]] = {
    "api": (_api,),
    "agent": (build_agent,),
    "proxy": (build_proxy,),
    "network-node": (build_agent, build_proxy),
    "all-in-one": (_api, build_agent, build_proxy),
}


def makeService(options: Options, reactor: Any = None) -> IService:
    """Wire the services of the chosen role into one tree."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    from mdsvc.drain import Drain
    from mdsvc.loglevel import LogLevelFilter, LogLevelService
    from mdsvc.operations import NodeService, node_metrics, operations_service
    from mdsvc.reload import LogLevelReload, Reloader
    from mdsvc.systemd import SystemdNotifier

    config: Config = options["parsed"]
    role = options["role"]
    workers = config.api.workers or 1
    if role == "api" and workers > 1 and options.get("worker-fd") is None:
        return _supervisor(config, reactor, workers, options)
    if role != "api" and workers > 1:
        log.warn("[DEFAULT] metadata_workers = {workers} is for the api role: {role} runs in one process", workers=workers, role=role)
    top = NodeService(config)
    parts: dict[str, Any] = {"metrics": node_metrics(config, role, reactor), "factories": [], "worker_fd": options.get("worker-fd"),
                             "worker_index": options.get("worker-index")}
    if options.get("worker-fd") is not None:
        from mdsvc.workers import die_with_parent

        die_with_parent()
    # the log level first: it filters until the very end (the drain's lines included)
    level = LogLevelFilter(config.debug)
    LogLevelService(level).setServiceParent(top)
    # stopped last of the role's services, once every listener has stopped accepting: the
    # requests in flight answered; then the backends under it (stores, providers, a replica:
    # what those requests need)
    drain = Drain(reactor, parts["factories"], config.drain_timeout)
    drain.setServiceParent(top)
    parts["backends"] = drain
    parts["reloadable"] = [LogLevelReload(level)]
    for build in SERVICES_BY_ROLE[role]:
        build(config, reactor, parts).setServiceParent(top)
    operations_service(config, role, reactor, parts).setServiceParent(top)
    reloader = Reloader(reactor, config, parts["reloadable"], lambda new: reload_problems(new, NODE_ROLES[role]),
                        sources=_listed_again(options))
    reloader.setServiceParent(top)
    # started last (the listeners are up), stopped first (STOPPING before the drain)
    notifier = SystemdNotifier(reactor, f"serving ({role})")
    reloader.hooks.append(notifier.reloading)
    notifier.setServiceParent(top)
    return top


def _listed_again(options: Options) -> Callable[[], list[str]] | None:
    """
    With C{--config-dir}: the configuration files a SIGHUP reads, listed again (a file added to or
    removed from the directory since startup counts, as with oslo.config); else None (the files
    read at startup).
    """
    files, directories = list(options.get("config-files") or []), list(options.get("config-dirs") or [])
    if not directories:
        return None
    return lambda: config_files(files, directories)


def _supervisor(config: Config, reactor: Any, workers: int, options: Options) -> IService:
    """
    The api role with C{metadata_workers} > 1: a supervisor of workers sharing the API's port
    (L{mdsvc.workers}).  Its workers are given the C{--config-dir} directories as such, so that
    each lists them when it starts or reloads.
    """
    from mdsvc.listen import Listening
    from mdsvc.loglevel import LogLevelFilter, LogLevelService
    from mdsvc.operations import NodeService, supervisor_operations_service
    from mdsvc.reload import LogLevelReload, Reloader
    from mdsvc.systemd import SystemdNotifier
    from mdsvc.workers import WorkerCommand, WorkerSupervisor

    top = NodeService(config)
    level = LogLevelFilter(config.debug)
    LogLevelService(level).setServiceParent(top)
    directories = list(options.get("config-dirs") or [])
    given = list(options.get("config-files") or []) if directories else list(config.sources)
    command = WorkerCommand(given, directories).argv()
    where = f"{_source(config)}: {config.api.listen_option}"
    check_endpoint(config.api.listen_endpoint, reactor, where)  # (a bad one or a systemd socket not passed: one line now)
    from mdsvc.api.reload import APIReload

    supervisor = WorkerSupervisor(reactor, config.api.listen_endpoint, workers, command, config.drain_timeout + 5,
                                  applies=APIReload.options)
    shared = Listening(where)
    supervisor.setServiceParent(shared)
    shared.setServiceParent(top)
    supervisor_operations_service(config, reactor, supervisor).setServiceParent(top)
    reloader = Reloader(reactor, config, [LogLevelReload(level), supervisor], lambda new: reload_problems(new, NODE_ROLES["api"]),
                        sources=_listed_again(options))
    reloader.setServiceParent(top)
    notifier = SystemdNotifier(reactor, f"serving (api, {workers} workers)", ready=supervisor.all_ready)
    reloader.hooks.append(notifier.reloading)
    notifier.setServiceParent(top)
    return top
