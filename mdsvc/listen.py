# -*- test-case-name: tests.test_listen -*-
"""
Listening, and saying in one line why it failed.

Every listener of a role (the API's endpoint, the agent's socket and extra endpoint, the fixed
proxy listeners) is started inside a L{Listening} service, which knows the option it comes
from. A listener that cannot listen (address in use, permission denied, an address the host does
not have, a socket directory that cannot be made...) ends startup with one line naming the
configuration, the option and the address, as a bad value does:

    mdsvc: etc/demo.conf: [proxy] listeners network 1111... tcp:8080:interface=127.0.0.1:
        cannot listen on 127.0.0.1:8080: Address already in use

(one line), instead of twistd's traceback. The line is the message of L{ListenFailed}. twistd
handles it as any failure to start (it removes its pid file; a daemonising twistd passes the
line to the parent, which prints it), then lets it out of the process, where the
C{sys.excepthook} that raising it installed prints that line instead of a traceback; the exit
status is 1.
"""

from __future__ import annotations

import errno
import sys
from types import TracebackType
from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError


class ListenFailed(Exception):
    """A listener could not listen; C{str()} is the one line to show (L{failed} makes one)."""


def failed(line: str) -> ListenFailed:
    """
    A L{ListenFailed} of C{line}, and the C{sys.excepthook} that prints it as that line should
    it end the process (the previous hook still handles every other exception).
    """
    previous = sys.excepthook
    if not getattr(previous, "_mdsvc_one_line", False):

        def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
            if isinstance(value, ListenFailed):
                print(value, file=sys.stderr)
            else:
                previous(kind, value, tb)

        hook._mdsvc_one_line = True  # type: ignore[attr-defined]
        sys.excepthook = hook
    return ListenFailed(line)


class NoSystemdSocket(Exception):
    """
    A C{systemd:} endpoint whose socket systemd did not pass (no descriptor at its index or with
    its name); C{str()} says so (L{no_systemd_socket}).
    """


def no_systemd_socket(description: str, error: BaseException) -> NoSystemdSocket | None:
    """
    What Twisted's C{serverFromString} raising C{error} for C{description} means when it is a
    C{systemd:} endpoint systemd passed no socket for (an C{IndexError} or C{KeyError}); else None.
    """
    if not description.startswith("systemd:") or not isinstance(error, (IndexError, KeyError)):
        return None
    which = "at that index" if isinstance(error, IndexError) else f"named {error}"
    return NoSystemdSocket(f"systemd passed no socket {which}: start the service through its .socket unit, "
                           "which sets LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES")


def describe(error: BaseException) -> str:
    """
    What went wrong when listening, in a few words: C{cannot listen on ADDRESS: REASON} for a
    socket error (with a hint for the usual cause of a refused privileged port), else
    C{cannot listen: REASON}.
    """
    if isinstance(error, NoSystemdSocket):
        return str(error)
    if isinstance(error, CannotListenError):
        address = error.port.decode("utf-8", "replace") if isinstance(error.port, bytes) else error.port
        if error.interface is not None:
            host = f"[{error.interface}]" if ":" in error.interface else (error.interface or "*")
            where = f"{host}:{address}"
        else:
            where = str(address)
        cause = error.socketError
        reason = (getattr(cause, "strerror", None) or str(cause)).strip()
        if getattr(cause, "errno", None) == errno.EACCES and isinstance(error.port, int) and 0 < error.port < 1024:
            reason += " (a port below 1024 needs root or CAP_NET_BIND_SERVICE)"
        return f"cannot listen on {where}: {reason}"
    if isinstance(error, OSError) and error.strerror:
        return f"cannot listen: {error.filename}: {error.strerror}" if error.filename else f"cannot listen: {error.strerror}"
    return f"cannot listen: {' '.join(str(error).split()) or type(error).__name__}"


class Listening(MultiService):
    """
    The listeners of one option: a failure to listen, while starting (privileged or not), is a
    L{ListenFailed} naming C{where}.

    @ivar where: the configuration and option, such as C{nova.conf: [mdsvc] api_endpoint
        tcp:8775} (the line reads C{mdsvc: WHERE: cannot listen on ADDRESS: REASON}).
    """

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def _failed(self, error: Exception) -> ListenFailed:
        return failed(f"mdsvc: {self.where}: {describe(error)}")

    def privilegedStartService(self) -> None:
        """Listen (before twistd drops privileges); a failure is one line."""
        try:
            super().privilegedStartService()
        except ListenFailed:
            raise
        except Exception as e:
            raise self._failed(e) from None

    def startService(self) -> None:
        """Listen if not listening yet; a failure is one line."""
        try:
            super().startService()
        except ListenFailed:
            raise
        except Exception as e:
            raise self._failed(e) from None


def listen_service(description: str, factory: Any, reactor: Any, where: str) -> IService:
    """
    A L{Listening} service that listens on the endpoint string C{description}, as
    C{strports.service} does (a failure is raised at once, not logged later).

    @raise ListenFailed: C{description} is not an endpoint this Twisted can make.
    """
    top = Listening(where)
    try:
        strports.service(description, factory, reactor=reactor).setServiceParent(top)
    except Exception as e:  # an unknown endpoint type, a bad argument, a certificate that cannot be read
        raise _unmakeable(description, where, e) from None
    return top


def check_endpoint(description: str, reactor: Any, where: str) -> None:
    """
    Make the server endpoint C{description} without listening, as L{listen_service} would (for a
    listener another part opens later, such as the workers' supervisor's).

    @raise ListenFailed: the line L{listen_service} would raise.
    """
    try:
        serverFromString(reactor, description)
    except Exception as e:
        raise _unmakeable(description, where, e) from None


def _unmakeable(description: str, where: str, error: Exception) -> ListenFailed:
    """The one line for an endpoint that cannot be made (a C{systemd:} socket not passed: L{no_systemd_socket})."""
    missing = no_systemd_socket(description, error)
    if missing is not None:
        return failed(f"mdsvc: {where}: {missing}")
    reason = " ".join(str(error).split()) or type(error).__name__
    return failed(f"mdsvc: {where}: not a server endpoint this Twisted can make: {reason}")
