# -*- test-case-name: tests.test_manage -*-
"""
C{mdsvc-manage}: the operator's command line, on the same configuration files the service runs with.

    mdsvc-manage [CONFIG] instance import [--reset-password] FILE... | list | show UUID | delete UUID
    mdsvc-manage [CONFIG] router import FILE... | list | show ID | delete ID
    mdsvc-manage [CONFIG] configdrive build UUID -o FILE [--format iso|vfat]
    mdsvc-manage [CONFIG] sign INSTANCE_ID
    mdsvc-manage [CONFIG] check-config [FILE...]
    mdsvc-manage [CONFIG] doctor [--guest IP --network NET|--router R]
    mdsvc-manage [CONFIG] trace UUID|IP [--follow]
    mdsvc-manage sample-config --role ROLE | --output-dir DIR

CONFIG is C{--config-file FILE} (repeated: later files win, option by option), C{--config-dir
DIR} (its C{*.conf} files, in sorted order, after the files) or C{--config FILE}, as for
C{twistd mdsvc}; without any, C{$MDSVC_CONFIG}.

Every error is one line on standard error and exit status 1; nothing is written on error. Only
C{import} creates a store: every other command on a store that does not exist says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, TextIO

import yaml
from twisted.logger import ILogObserver, Logger, formatEvent
from zope.interface import provider

from mdsvc.api.identify import sign
from mdsvc.config import NODE_ROLES, Config, ConfigError, check_config, given_sources, load_config, located
from mdsvc.model import DocumentError, Instance, Router, YAMLDocumentLoader, instance_from_document, router_from_document
from mdsvc.schema import declared_field, join
from mdsvc.store.sql import SQLDocuments
from mdsvc.store.startup import StoreProblem, prepare_configured_store

#: Where the document format is described, for C{import --help}.
DOCUMENT_FORMAT = (
    "The document format (every field, its type, default and checks) is docs/instance-documents.md in mdsvc's "
    "source tree; python -m mdsvc.docpage prints the same page. An example with most fields: "
    "mdsvc/data/demo-instance.json."
)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help, except that a path such as C{demo-instance.json} is never cut at its hyphen."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class CommandError(Exception):
    """A command failed; C{str()} is the one line to print."""


def read_documents(path: str, stdin: TextIO | None = None) -> list[Any]:
    """
    Parse a JSON or YAML file holding one document or a list of them (C{-}: standard input);
    an empty file, C{null} or C{[]} hold none (an empty list).

    @raise CommandError: naming the file and the line of a syntax error.
    """
    try:
        if path == "-":
            text = (stdin or sys.stdin).read()
        else:
            with open(path, encoding="utf-8-sig") as f:
                text = f.read()
    except OSError as e:
        raise CommandError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path}: not UTF-8 text") from None
    stripped = text.lstrip()
    if path.endswith(".json") or (stripped.startswith(("{", "[")) and not path.endswith((".yaml", ".yml"))):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if path.endswith(".json"):
                raise CommandError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
            data = _yaml(path, text)  # a YAML flow collection such as [{uuid: a}]
    else:
        data = _yaml(path, text)
    if data is None:
        return []
    return data if isinstance(data, list) else [data]


def _yaml(path: str, text: str) -> Any:
    try:
        return yaml.load(text, Loader=YAMLDocumentLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        # str() of a YAML error spans several lines (it quotes the input): keep the first.
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise CommandError(f"{where}: invalid YAML: {problem}") from None


def _store(config: Config, create: bool = False) -> Any:
    """
    The configured store (L{mdsvc.store.sql}): the embedded SQLite file, checked as the service
    checks it at startup (modes, soundness), or mdsvc's documents on a database server.

    @param create: make the store if there is none (an import); every other command needs an
        existing one, and a missing one is an error rather than a new, empty store (on a
        database server: its tables are made by an import only).
    """
    from mdsvc.store import document_store

    if not document_store(config.store):
        raise CommandError(f"{located(config, 'mdsvc', 'store')}: mdsvc-manage handles mdsvc's own document stores "
                           f"(sqlite:PATH, postgresql://..., mysql+pymysql://...), not store = {config.store}")
    try:
        documents = SQLDocuments(config.store)
    except ValueError as e:
        raise CommandError(f"{located(config, 'mdsvc', 'store')}: {e}") from None
    if not create and not documents.exists():
        documents.close()
        raise CommandError(f"no store at {documents.path} ([mdsvc] store of {config.source or 'the defaults'}; "
                           "instance import or router import creates it)")
    if documents.embedded:
        try:
            prepare_configured_store(config, Logger(observer=_warn))  # (creates a new one, private)
        except StoreProblem as e:
            documents.close()
            raise CommandError(f"{config.source or 'defaults'}: {e}") from None
    elif create:
        documents.create()
    return documents


@provider(ILogObserver)
def _warn(event: dict[str, Any]) -> None:
    """Print a warning logged by the store checks (mdsvc-manage has no log) on standard error."""
    print(f"mdsvc-manage: warning: {formatEvent(event)}", file=sys.stderr)


def _import(documents: SQLDocuments, paths: Sequence[str], routers: bool, out: TextIO, reset_password: bool = False) -> None:
    """
    Validate every document of every file (errors name the file and field), then import all.

    @param reset_password: instances only: replace their stored passwords with the documents'.
    """
    validate = router_from_document if routers else instance_from_document
    identity = declared_field(Router, "id") if routers else declared_field(Instance, "uuid")
    docs: list[Any] = []
    seen: dict[str, str] = {}  # id -> "FILE: [i]" where it was first found
    for path in paths:
        found = read_documents(path)
        if not found:
            # an import that imports nothing is a mistake (a wrong file, an export that failed)
            raise CommandError(f"{path}: no {'router' if routers else 'instance'} documents")
        for i, doc in enumerate(found):
            where = f"[{i}]" if len(found) > 1 else ""
            try:
                key = validate(doc, where)
            except DocumentError as e:
                raise CommandError(f"{path}: {e}") from None
            # Name a duplicate by file and position here: the store only sees one merged list.
            ident = getattr(key, identity.attr)
            field = join(where, identity.path)
            if ident in seen:
                raise CommandError(f"{path}: {field}: {ident} appears twice in this import (also {seen[ident]})")
            seen[ident] = f"{path}{': ' + where if where else ''}"
        docs.extend(found)
    try:
        ids = documents.import_routers(docs) if routers else documents.import_instances(docs, reset_password=reset_password)
    except DocumentError as e:
        raise CommandError(f"{', '.join(paths)}: {e}") from None
    for imported in ids:
        print(f"imported {'router' if routers else 'instance'} {imported}", file=out)


def _build_config_drive(config: Config, documents: SQLDocuments, uuid: str, output: str, fmt: str) -> None:
    """Render the drive's files with the API's own code and write the image (all or nothing)."""
    from twisted.internet.defer import ensureDeferred

    from mdsvc import __version__
    from mdsvc.api.factory import app_from_config
    from mdsvc.configdrive import ConfigDriveError, drive_files, write_image
    from mdsvc.store.threaded import DocumentStore

    row = documents.get(uuid)
    if row is None:
        raise CommandError(f"no instance {uuid}")
    instance = row.instance()
    from twisted.internet import reactor

    try:
        app = app_from_config(config, DocumentStore.in_threads(documents, reactor), reactor)
    except ConfigError as e:
        raise CommandError(str(e)) from None
    except ValueError as e:
        # a vendordata provider that cannot be built: an unknown name, a plugin refusing its configuration
        raise CommandError(f"{config.source or 'defaults'}: {e}") from None
    try:
        files = _wait(ensureDeferred(_with_providers_running(app, lambda: drive_files(app, instance, config.api.config_drive_skip_versions))))
        write_image(files, output, fmt, publisher=f"mdsvc {__version__}")
    except ConfigDriveError as e:
        raise CommandError(str(e)) from None


async def _with_providers_running(app: Any, work: Any) -> Any:
    """
    Await C{work()} with the app's vendordata providers that are services running, as they are
    under the API (a vendor's provider may open its connections when started).
    """
    from twisted.application.service import IService
    from twisted.internet.defer import maybeDeferred

    running = [IService(p) for p in app.built_providers.values() if IService.providedBy(p)]
    for service in running:
        service.startService()
    try:
        return await work()
    finally:
        for service in reversed(running):
            await maybeDeferred(service.stopService)


def _wait(d: Any) -> Any:
    """The result of a Deferred, running the reactor only if it has not fired yet (DynamicJSON)."""
    from twisted.python.failure import Failure

    results: list[Any] = []
    d.addBoth(results.append)
    if not results:
        from twisted.internet import reactor

        d.addBoth(lambda _: reactor.stop())
        reactor.run()
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def _sources(args: argparse.Namespace) -> list[str] | None:
    """The configuration files the command line names (else C{$MDSVC_CONFIG}; else None: the defaults)."""
    try:
        return given_sources(args.config_files, args.config_dirs, os.environ)
    except ConfigError as e:
        raise CommandError(str(e)) from None


def _check_config(paths: Sequence[str] | None, out: TextIO) -> int:
    """
    Print every problem of the configuration C{paths}, one line each; 1 if there is any. Once
    every value is good, the names given to plugins are checked against those installed here,
    and session tokens against the shared secret they need.
    """
    problems = check_config(paths)
    if not problems:
        from mdsvc.api.tokens import config_problems
        from mdsvc.tap import unknown_names

        config = load_config(paths)
        problems = unknown_names(config, frozenset({"api", "agent"})) + config_problems(config)
    for problem in problems:
        print(problem, file=out)
    return 1 if problems else 0


def _sample_config(role: str | None, directory: str | None, out: TextIO) -> int:
    """Print the sample configuration of C{role}, or write every role's into C{directory}."""
    from mdsvc.sampleconfig import render_sample, write_samples

    if directory is None:
        out.write(render_sample(role or ""))
        return 0
    for path in write_samples(directory):
        print(f"wrote {path}", file=out)
    return 0


def run(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    """Run one command; return the exit status (errors raise L{CommandError})."""
    parser = argparse.ArgumentParser(prog="mdsvc-manage", description="Manage mdsvc's instance store.")
    parser.add_argument("--config-file", dest="config_files", action="append", default=[], metavar="FILE",
                        help="configuration file; repeat it: later files win, option by option (default: $MDSVC_CONFIG)")
    parser.add_argument("--config", dest="config_files", action="append", metavar="FILE", help="one configuration file, as --config-file")
    parser.add_argument("--config-dir", dest="config_dirs", action="append", default=[], metavar="DIR",
                        help="every *.conf file of DIR, in sorted order, after the --config-file files")
    sub = parser.add_subparsers(dest="command", required=True)

    instance = sub.add_parser("instance", help="instance documents").add_subparsers(dest="action", required=True)
    p = instance.add_parser(
        "import", help="import JSON or YAML instance documents (validated first; all or nothing)",
        description="Import JSON or YAML instance documents: every file is validated first, then all are written "
        "in one transaction (all or nothing). A password the guest stored (through the password endpoint) is kept "
        "when an instance is re-imported, whether its document omits \"password\" or gives null or another "
        "password; a document's password is stored only for an instance that has none, or with --reset-password.",
        epilog=DOCUMENT_FORMAT, formatter_class=_HelpFormatter,
    )
    p.add_argument("files", nargs="+", help="JSON or YAML files of one document or a list of them (- reads standard input)")
    p.add_argument(
        "--reset-password", action="store_true",
        help="replace the stored password of each imported instance with its document's (none when the document "
        "gives none), so that its guest may post a new one",
    )
    instance.add_parser("list", help="list instances")
    p = instance.add_parser("show", help="print one stored instance document")
    p.add_argument("uuid")
    p = instance.add_parser("delete", help="delete an instance")
    p.add_argument("uuid")

    router = sub.add_parser("router", help="router documents").add_subparsers(dest="action", required=True)
    p = router.add_parser("import", help="import router documents", epilog=DOCUMENT_FORMAT, formatter_class=_HelpFormatter)
    p.add_argument("files", nargs="+")
    router.add_parser("list", help="list routers")
    p = router.add_parser("show", help="print one stored router document")
    p.add_argument("id")
    p = router.add_parser("delete", help="delete a router")
    p.add_argument("id")

    drive = sub.add_parser("configdrive", help="config drives").add_subparsers(dest="action", required=True)
    p = drive.add_parser("build", help="write the config drive of an instance (ISO 9660 + Rock Ridge + Joliet, or VFAT)")
    p.add_argument("uuid")
    p.add_argument("-o", "--output", required=True, help="image file to write")
    p.add_argument("--format", choices=("iso", "vfat"), default="iso", help="iso (default, like config_drive_format = iso9660) or vfat")

    p = sub.add_parser("sign", help="print the X-Instance-ID-Signature the agent would send")
    p.add_argument("instance_id")
    sub.add_parser("ovn-status", help="lookup = ovn: the agent's replica of the Southbound database, and how old it is")
    p = sub.add_parser("check-config", help="check a configuration: exit 0, or one line per problem")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="files read together as the service reads them, later ones winning (default: the CONFIG options)")
    p = sub.add_parser("doctor", help="check every hop of this node; one line per hop, OK or what is broken and the fix",
                       description="Walk every hop of this node as its configuration says it is deployed: the configuration, "
                       "the processes (over their admin sockets, [mdsvc] admin_dir), namespaces and their listeners, the agent "
                       "socket, the lookup backend, the API, the shared secret, the store. Exit status 0 only when all is well. "
                       "Run it as the user the service runs as.")
    p.add_argument("--guest", metavar="IP", help="a guest's address: the lookup backend must name its instance")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--network", metavar="NET", help="the guest's network id (with --guest)")
    where.add_argument("--router", metavar="R", help="the router id the guest comes through (with --guest)")
    p = sub.add_parser("trace", help="the last requests of one instance or guest address across every hop of this node",
                       description="The last requests of an instance (UUID) or a guest (IP address) as every process of this "
                       "node answered them (time, hop, status, latency, cache, reason of a failure), read from their admin "
                       "sockets ([mdsvc] admin_dir). Run it as the user the service runs as.")
    p.add_argument("what", metavar="UUID|IP")
    p.add_argument("--follow", "-f", action="store_true", help="then print each new request as it is answered (Ctrl-C stops)")
    p.add_argument("--limit", "-n", type=int, default=50, help="requests shown at first (default 50)")
    p.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)  # --follow for this many seconds (tests)
    p = sub.add_parser("sample-config", help="print the sample configuration of a role, generated from the option table")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--role", choices=tuple(NODE_ROLES), help="the role whose options to show")
    which.add_argument("--output-dir", metavar="DIR", help="write ROLE.conf of every role into DIR (etc/ of the source tree)")

    args = parser.parse_args(argv)
    if args.command == "sample-config":
        return _sample_config(args.role, args.output_dir, out)
    if args.command == "check-config":
        return _check_config(args.files or _sources(args), out)
    try:
        config = load_config(_sources(args))
    except ConfigError as e:
        if args.command == "doctor":  # the first hop, broken: said as the doctor says it
            from mdsvc.doctor import Finding

            for problem in e.lines:
                print("\n".join(Finding("config", False, problem, "correct the option named").lines()), file=out)
            print("broken: config", file=out)
            return 1
        raise CommandError(str(e)) from None
    if args.command == "doctor":
        from mdsvc.doctor import run_doctor

        if (args.network or args.router) and not args.guest:
            raise CommandError("--network and --router go with --guest IP")
        if args.guest and not (args.network or args.router):
            raise CommandError("--guest needs --network NET or --router R")
        guest = (args.guest, args.network, args.router) if args.guest else None
        return run_doctor(config, _sources(args), out, guest)
    if args.command == "trace":
        from mdsvc.admin.trace import TraceError, run_trace

        try:
            return run_trace(config.operations.admin_dir, args.what, out, follow=args.follow, limit=args.limit,
                             duration=args.duration, err=sys.stderr)
        except TraceError as e:
            raise CommandError(str(e)) from None
    if args.command == "sign":
        print(sign(config.api.shared_secret, args.instance_id), file=out)
        return 0
    if args.command == "ovn-status":
        from mdsvc.lookup.ovn.status import describe_status

        try:
            for line in describe_status(config.agent.ovn.status_path):
                print(line, file=out)
        except ValueError as e:
            raise CommandError(str(e)) from None
        return 0
    documents = _store(config, create=args.action == "import")
    if args.command == "configdrive":
        _build_config_drive(config, documents, args.uuid, args.output, args.format)
        print(f"wrote the {args.format} config drive of {args.uuid} to {args.output}", file=out)
        return 0
    if args.command == "instance":
        if args.action == "import":
            _import(documents, args.files, routers=False, out=out, reset_password=args.reset_password)
        elif args.action == "list":
            for uuid, name, project, ips in documents.list_instances():
                print(f"{uuid}\t{name or ''}\t{project or ''}\t{','.join(ips)}", file=out)
        elif args.action == "show":
            row = documents.get(args.uuid)
            if row is None:
                raise CommandError(f"no instance {args.uuid}")
            print(json.dumps(row.full_document(), indent=2), file=out)
        elif args.action == "delete":
            if not documents.delete_instance(args.uuid):
                raise CommandError(f"no instance {args.uuid}")
            print(f"deleted instance {args.uuid}", file=out)
    elif args.command == "router":
        if args.action == "import":
            _import(documents, args.files, routers=True, out=out)
        elif args.action == "list":
            for r in documents.list_routers():
                print(f"{r.id}\t{r.project_id or ''}\t{','.join(r.networks)}", file=out)
        elif args.action == "show":
            document = documents.router_document(args.id)
            if document is None:
                raise CommandError(f"no router {args.id}")
            print(json.dumps(document, indent=2), file=out)
        elif args.action == "delete":
            if not documents.delete_router(args.id):
                raise CommandError(f"no router {args.id}")
            print(f"deleted router {args.id}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """
    Console entry point. Output cut short by its reader (C{mdsvc-manage instance list | head})
    ends the command quietly: what the reader wanted it has.
    """
    try:
        status = run(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()  # here, where a closed pipe can still be caught
    except BrokenPipeError:
        _quiet_stdout()
        status = 0
    except CommandError as e:
        print(f"mdsvc-manage: {e}", file=sys.stderr)
        status = 1
    except OSError as e:
        print(f"mdsvc-manage: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        status = 1
    except Exception as e:  # a store that cannot be opened, a locked database, ...
        print(f"mdsvc-manage: {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
    sys.exit(status)


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()
