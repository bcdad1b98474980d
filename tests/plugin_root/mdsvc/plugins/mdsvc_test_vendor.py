"""
A vendor's vendordata provider, as a plugin outside the mdsvc package (for the tests):
C{[api] vendordata_providers = ..., TestVendor} adds C{{"test_vendor": {...}}} to
vendor_data2.json, with the C{greeting} of its own section C{[test_vendor]}.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.plugin import IPlugin
from zope.interface import implementer

from mdsvc.config import Config, vendor_options
from mdsvc.interfaces import IVendordataProvider, IVendordataProviderFactory
from mdsvc.model import Instance


@implementer(IVendordataProvider)
@frozen
class TestVendorProvider:
    """Vendor data naming the instance, and the greeting the configuration gives."""

    greeting: str
    name = "TestVendor"

    def vendordata(self, instance: Instance) -> Deferred[dict[str, Any]]:
        """See L{IVendordataProvider.vendordata}."""
        return succeed({"test_vendor": {"greeting": self.greeting, "instance": instance.uuid, "hostname": instance.hostname}})


@implementer(IPlugin, IVendordataProviderFactory)
class TestVendorFactory:
    """The factory mdsvc finds with C{getPlugins(IVendordataProviderFactory, mdsvc.plugins)}."""

    name = "TestVendor"

    def build(self, config: Config, reactor: Any) -> TestVendorProvider:
        """See L{IVendordataProviderFactory.build}: C{[test_vendor] greeting} is required."""
        greeting = vendor_options(config, "test_vendor").get("greeting")
        if not greeting:
            raise ValueError("vendordata provider TestVendor needs [test_vendor] greeting")
        return TestVendorProvider(greeting)


test_vendor = TestVendorFactory()
