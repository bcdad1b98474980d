# -*- test-case-name: tests.test_plugins -*-
"""
Drop-in folder for vendor extensions: lookup backends, instance stores, vendordata providers.

A vendor's module goes into a directory C{mdsvc/plugins/} under any entry of C{sys.path}
(C{PYTHONPATH=/opt/vendor twistd ...} finds C{/opt/vendor/mdsvc/plugins/*.py}), with no
C{__init__.py} in that C{mdsvc/} or C{mdsvc/plugins/}: the C{__path__} of this package is
extended with every such directory, as C{twisted/plugins/__init__.py} does. Its objects that
provide L{twisted.plugin.IPlugin} and one of the factory interfaces are found by
L{installed} (C{twisted.plugin.getPlugins}) and chosen by their C{name}:

  - L{mdsvc.lookup.ILookupBackendFactory}: C{[mdsvc] lookup = NAME:ARG};
  - L{mdsvc.interfaces.IInstanceStoreFactory}: C{[mdsvc] store = NAME:ARG};
  - L{mdsvc.interfaces.IVendordataProviderFactory}: C{[api] vendordata_providers = ..., NAME}.

Twisted writes a C{dropin.cache} file into each plugin directory it can write to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__ = ["installed", "named"]


def installed(interface: type[Any]) -> list[Any]:
    """The plugins providing C{interface} in every C{mdsvc/plugins} directory."""
    import sys

    from twisted.plugin import getPlugins

    return list(getPlugins(interface, sys.modules[__name__]))


def named(name: str, plugins: Iterable[Any]) -> Any | None:
    """
    The one plugin of C{plugins} whose C{name} is C{name}, or None.

    @raise ValueError: several are (one line naming their modules): which one a name means must
        not depend on the order in which directories are scanned.
    """
    found = [p for p in plugins if p.name == name]
    if len(found) > 1:
        modules = ", ".join(sorted(getattr(p, "__module__", None) or type(p).__module__ for p in found))
        raise ValueError(f"several plugins are named {name!r} ({modules}); remove all but one")
    return found[0] if found else None
