# -*- test-case-name: tests.test_doctor -*-
"""
C{mdsvc-manage doctor [--guest IP --network NET | --router R]}: every hop of this node, as its
configuration says it is deployed, checked in the order a guest's request crosses them; one line
per hop, C{OK} or C{FAIL} with what is broken and the fix; exit status 0 only when all is well.

It asks the running processes over their admin sockets (C{[mdsvc] admin_dir}, never a
guest-facing listener) and checks the sockets and ports the configuration names itself:

  1. C{config}: the files are valid (as C{check-config} says).
  2. C{process ROLE}: each process of the node answers on its admin socket; with
     C{metadata_workers} > 1, C{process api} is the supervisor (naming its workers) and
     C{process api@N} each worker, one that is not running named.
  3. proxies: C{namespaces} discovered, C{listener NAME} bound in each, C{fixed listener}s
     accepting; C{agent socket} accepting when the agent is another process.
  4. agent: C{agent socket} accepting; C{lookup backend} answering (for C{--guest}: naming its
     instance); C{metadata API} reachable from the agent; C{shared secret}: a request signed as
     the agent signs is accepted (200, or 404 for an instance the API does not have) where a
     wrongly signed one gets 403.
  5. API: C{instance store} answering (as each worker sees it, naming the worker), C{API listener}
     accepting.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any, TextIO

from attrs import frozen

from mdsvc.admin.client import AdminClient, AdminUnavailable, node_sockets
from mdsvc.config import NODE_ROLES, Config, check_config


@frozen
class Finding:
    """One hop's verdict: C{ok}, what was found, and for a broken hop the fix."""

    hop: str
    ok: bool
    text: str
    fix: str | None = None

    def lines(self) -> list[str]:
        """C{OK    hop: text}, or C{FAIL  hop: text} and C{      fix: ...}."""
        out = [f"{'OK' if self.ok else 'FAIL':<5} {self.hop}: {self.text}"]
        if not self.ok and self.fix:
            out.append(f"      fix: {self.fix}")
        return out


def _connects(path: str | None = None, host: str | None = None, port: int | None = None, timeout: float = 2.0) -> str | None:
    """None if a connection is accepted (UNIX C{path}, or TCP C{host}:C{port}), else why not."""
    family = socket.AF_UNIX if path is not None else socket.AF_INET6 if host and ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path if path is not None else (host, port))
        return None
    except FileNotFoundError:
        return "no such socket"
    except OSError as e:
        return e.strerror or str(e)
    finally:
        s.close()


def _on_disk(directory: str, wanted: str) -> list[str]:
    """The namespaces in C{directory} that C{[proxy] namespaces} wants."""
    from mdsvc.proxy.discovery import classify, namespace_filter
    from mdsvc.proxy.service import _wanted

    match = namespace_filter(_wanted(wanted))
    try:
        return [name for name in os.listdir(directory) if classify(name) is not None and match(name)]
    except OSError:
        return []


def _tcp(endpoint: str) -> tuple[str, int] | None:
    """C{(host, port)} of a C{tcp:PORT[:interface=ADDR]} endpoint string (None for other kinds, or port 0)."""
    fields = endpoint.replace("\\:", "\0").split(":")
    if fields[0] not in ("tcp", "tcp6") or len(fields) < 2:
        return None
    port = next((f for f in fields[1:] if f.isdigit()), None) or next((f[5:] for f in fields if f.startswith("port=")), None)
    interface = next((f[10:] for f in fields if f.startswith("interface=")), "")
    host = interface.replace("\0", ":") or ("::1" if fields[0] == "tcp6" else "127.0.0.1")
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return (host, int(port)) if port and int(port) else None


class Doctor:
    """
    The checks of one node. C{run} gathers the findings; each check method appends its own.

    @ivar guest: C{(ip, network, router)} of C{--guest}, or None.
    """

    def __init__(self, config: Config, paths: Sequence[str] | None, guest: tuple[str, str | None, str | None] | None = None) -> None:
        self.config = config
        self.paths = paths
        self.guest = guest
        self.findings: list[Finding] = []
        self.processes: dict[str, tuple[AdminClient, dict[str, Any]]] = {}
        """By the admin socket's name (C{ROLE}, or C{api@N} for a worker): its client and C{/status}."""

    def roles(self) -> set[str]:
        """The roles of the processes that answered."""
        return {status["role"] for _, status in self.processes.values()}

    def add(self, hop: str, ok: bool, text: str, fix: str | None = None) -> None:
        """One finding."""
        self.findings.append(Finding(hop, ok, text, fix))

    def run(self) -> list[Finding]:
        """Every check, in the order a guest's request crosses the hops."""
        self.check_config()
        self.check_processes()
        parts = frozenset().union(*(NODE_ROLES[role] for role in self.roles())) if self.processes else frozenset()
        if "proxy" in parts:
            self.check_proxies()
        if "agent" in parts:
            self.check_agent()
        elif not self.processes:
            self.check_from_config()
        if "api" in parts:
            self.check_api()
        return self.findings

    # -- the hops ------------------------------------------------------------------------------

    def check_config(self) -> None:
        """The configuration files are valid."""
        problems = check_config(self.paths)
        if not problems:
            from mdsvc.tap import unknown_names

            problems = unknown_names(self.config, frozenset({"api", "agent"}))
        if problems:
            for problem in problems:
                self.add("config", False, problem, "correct the option named (mdsvc-manage check-config lists every problem)")
        else:
            self.add("config", True, f"{self.config.source or 'the embedded defaults'}: valid")

    def check_processes(self) -> None:
        """Each process of the node answers on its admin socket."""
        admin_dir = self.config.operations.admin_dir
        clients = node_sockets(admin_dir)
        for client in clients:
            try:
                status = client.get("/status")
            except AdminUnavailable as e:
                self.add(f"process {client.name}", False, f"its admin socket does not answer: {e}",
                         f"start it again (systemctl restart mdsvc@{client.role}), or remove the stale socket")
                continue
            name = client.name
            self.processes[name] = (client, status)
            workers = status.get("workers")
            if workers is None:
                self.add(f"process {name}", True, f"pid {status['pid']}, admin socket {client.path}")
                continue
            running = ", ".join(f"{w['index']} (pid {w['pid']})" for w in workers if w["pid"] is not None)
            self.add(f"process {name}", True, f"pid {status['pid']}, supervisor of {len(workers)} API workers "
                     f"(running: {running or 'none'}), admin socket {client.path}")
            for worker in workers:
                if worker["pid"] is None:
                    self.add(f"process {name}@{worker['index']}", False, "not running: the supervisor is starting another "
                             f"({worker['restarts']} restarts so far)",
                             "see the API's log for why its workers exit (journalctl -u mdsvc@api)")
        if not clients:
            self.add("processes", False, f"no mdsvc process has an admin socket in {admin_dir}",
                     "start mdsvc with this configuration (systemctl start mdsvc@ROLE); run the doctor as the user it runs as")

    def check_proxies(self) -> None:
        """Namespaces discovered, a listener in each, the fixed listeners, and the agent socket behind them."""
        proxy = self.config.proxy
        for client, status in self.processes.values():
            if "proxy" not in NODE_ROLES[status["role"]]:
                continue
            try:
                status = client.get("/namespaces")
            except AdminUnavailable as e:
                self.add("namespaces", False, str(e))
                continue
            if status["served"]:
                names = status["namespaces"]
                missed = sorted(set(_on_disk(status["directory"], proxy.namespaces)) - set(names))
                if missed:
                    self.add("namespaces", False, f"in {status['directory']} but not discovered by the proxy: {', '.join(missed)}",
                             "check [proxy] namespaces and netns_dir; the proxy rescans every rescan_interval")
                self.add("namespaces", True, f"{len(names)} discovered in {status['directory']}"
                         + (f": {', '.join(sorted(names))}" if 0 < len(names) <= 8 else ""))
                for name, info in sorted(names.items()):
                    if info["listeners"] and info["problem"] is None:
                        self.add(f"listener {name}", True, f"bound ({', '.join(info['listeners'])})")
                    else:
                        self.add(f"listener {name}", False, f"no listener bound in the namespace: {info['problem'] or 'not tried yet'}",
                                 "free 169.254.169.254:80 (or [::]:9697 in a qrouter- namespace) in it: another metadata proxy "
                                 "(Neutron's haproxy?) holds it; mdsvc tries again every rescan_interval")
        for listener in proxy.listeners:
            where = _tcp(listener.endpoint)
            if where is None:
                continue
            problem = _connects(host=where[0], port=where[1])
            self.add(f"fixed listener {listener.kind} {listener.id}", problem is None,
                     f"{listener.endpoint}: {'accepting' if problem is None else problem}",
                     "see the proxy's log for why it could not listen")
        if not any("agent" in NODE_ROLES[role] for role in self.roles()):
            self.check_agent_socket(as_upstream=True)

    def check_agent_socket(self, as_upstream: bool = False) -> None:
        """The agent's UNIX socket accepts connections."""
        path = self.config.agent.socket_path
        problem = _connects(path=path)
        if problem is None:
            self.add("agent socket", True, f"{path}: accepting")
        else:
            self.add("agent socket", False, f"{path}: {problem}" + (": the agent is not running" if as_upstream else ""),
                     "start the agent (systemctl start mdsvc@agent), or point [DEFAULT] metadata_proxy_socket at its socket")

    def check_agent(self) -> None:
        """The agent: its socket, its lookup backend, the API behind it, the shared secret."""
        client, status = next((c, s) for c, s in self.processes.values() if "agent" in NODE_ROLES[s["role"]])
        self.check_agent_socket()
        ready = self._ready(client)
        lookup_problem = next((p for name, p in ready.items() if name.startswith("lookup backend")), None)
        found: list[str] | None = None
        if self.guest is not None:
            ip, network, router = self.guest
            try:
                answer = client.get("/check/lookup", address=ip, network=network, router=router)
            except AdminUnavailable as e:
                answer = {"backend": self.config.agent.lookup, "found": None, "error": str(e)}
            where = f"network {network}" if network else f"router {router}"
            if answer["error"]:
                self._lookup_broken(answer["error"])
            elif answer["found"]:
                found = answer["found"]
                self.add("lookup backend", True, f"{answer['backend']}: guest {ip} on {where} is instance {found[0]} (project {found[1]})")
            else:
                self.add("lookup backend", False, f"{answer['backend']} answers, but no port has {ip} on {where}",
                         "check the guest's address and network (mdsvc-manage trace IP shows what it asked)")
        elif lookup_problem is not None:
            self._lookup_broken(lookup_problem)
        else:
            self.add("lookup backend", True, f"{self.config.agent.lookup}: answering")
        if status.get("agent_in_process_api"):
            self.add("metadata API", True, "in this process (all-in-one): no socket, no signature between agent and API")
            return
        api_problem = next((p for name, p in ready.items() if name.startswith("metadata API")), None)
        url = self.config.agent.api_url
        if api_problem is not None:
            self.add("metadata API", False, f"{url} from the agent: {api_problem}",
                     "start the API (systemctl start mdsvc@api), or correct nova_metadata_host / nova_metadata_port")
            self.add("shared secret", False, "not checked: the API does not answer")
            return
        self.add("metadata API", True, f"{url}: answering the agent")
        self.check_secret(client, found)

    def _lookup_broken(self, problem: str) -> None:
        self.add("lookup backend", False, f"{self.config.agent.lookup}: {problem}",
                 "make the backend reachable from this node ([mdsvc] lookup and its options: [neutron] auth_url / "
                 "endpoint_override, [ovn] ovn_sb_connection, the static file, the store)")

    def check_secret(self, client: AdminClient, found: list[str] | None) -> None:
        """A request signed as the agent signs is accepted by the API; a wrongly signed one is refused."""
        try:
            result = client.get("/check/secret", instance=found[0] if found else None, project=found[1] if found else None)
        except AdminUnavailable as e:
            self.add("shared secret", False, f"not checked: {e}")
            return
        signed, wrong = result.get("signed"), result.get("wrong")
        if signed is None or wrong is None:
            self.add("shared secret", False, f"not checked: {result.get('error', 'no answer')}")
        elif signed == 403:
            self.add("shared secret", False, "the API refuses the agent's signature (403): metadata_proxy_shared_secret differs "
                     "between this agent and the API", "set the same metadata_proxy_shared_secret in the agent's and the API's "
                     "configuration, and restart the one changed")
        elif wrong != 403:
            self.add("shared secret", False, f"the API accepts a wrong signature (answered {wrong}): it does not check them",
                     "set [neutron] service_metadata_proxy = true (and a metadata_proxy_shared_secret) in the API's configuration")
        else:
            expected = "200" if found else "404 for an instance it does not have"
            self.add("shared secret", True, f"a signed request is accepted ({signed}; expected {expected}), a wrongly signed one "
                     "refused (403)")

    def check_api(self) -> None:
        """The API process (or each of its workers, named): its store answers; its listener accepts."""
        serving = [(c, s) for c, s in self.processes.values() if s["role"] in ("api", "all-in-one") and "workers" not in s]
        if not serving:
            return
        for client, status in sorted(serving, key=lambda cs: cs[1].get("worker") or 0):
            worker = status.get("worker")
            seen = f" (as API worker {worker} sees it, {client.path})" if worker is not None else ""
            for name, problem in self._ready(client).items():
                if name.startswith("instance store"):
                    self.add("instance store", problem is None, f"{name[len('instance store '):]}: {problem or 'answering'}{seen}",
                             "check the store's file or database server and its permissions (store = nova: [api_database] and "
                             "[database] connection)")
        where = _tcp(self.config.api.listen_endpoint)
        if where is not None:
            problem = _connects(host=where[0], port=where[1])
            self.add("API listener", problem is None, f"{self.config.api.listen_endpoint}: {problem or 'accepting'}",
                     "see the API's log for why it could not listen")

    def check_from_config(self) -> None:
        """No process answers: what the configuration names can still be looked at (the agent socket)."""
        self.check_agent_socket()

    def _ready(self, client: AdminClient) -> dict[str, str | None]:
        try:
            return {d["name"]: d["problem"] for d in client.get("/ready")["dependencies"]}
        except AdminUnavailable as e:
            return {"admin socket": str(e)}


def run_doctor(config: Config, paths: Sequence[str] | None, out: TextIO,
               guest: tuple[str, str | None, str | None] | None = None) -> int:
    """Print one line per hop (and the fix of each broken one), then a summary; 0 when all is well, else 1."""
    findings = Doctor(config, paths, guest).run()
    for finding in findings:
        for text in finding.lines():
            print(text, file=out)
    broken = [f.hop for f in findings if not f.ok]
    if broken:
        print(f"broken: {', '.join(dict.fromkeys(broken))}", file=out)
        return 1
    print(f"all is well ({len(findings)} checks on {os.uname().nodename})", file=out)
    return 0


__all__ = ["Doctor", "Finding", "run_doctor"]
