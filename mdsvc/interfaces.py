# -*- test-case-name: tests.test_store -*-
"""The contracts between mdsvc's parts; implementations are attrs classes checked with verifyObject."""

from zope.interface import Attribute, Interface


class AmbiguousAddress(Exception):
    """More than one instance has the fixed IP a remote-address lookup asked for."""


class StoreUnavailable(Exception):
    """The instance store cannot answer now (its database is down or too slow); C{str()} says why."""


class IInstanceStore(Interface):
    """Where instance documents live: read by the metadata API, written by mdsvc-manage."""

    def get(uuid):
        """
        Load one instance.

        @return: a Deferred firing with the L{mdsvc.model.Instance}, or None if there is none.
        """

    def by_address(ip):
        """
        Find the instance that has C{ip} as a fixed IP, in any network.

        @return: a Deferred firing with the L{mdsvc.model.Instance} or None; it fails with
            L{AmbiguousAddress} when several instances share the address.
        """

    def by_provider(provider_id, ip):
        """
        The ports holding C{ip} in the networks of a metadata provider (an NSX edge or load
        balancer: a router document in the embedded store).

        @return: a Deferred firing with a list of C{(instance_id, project_id)}, or None when
            there is no such provider or it has no networks.
        """

    def set_password(uuid, password):
        """
        Store the password the guest posted, only if none is stored yet (compare-and-set).

        @return: a Deferred firing with True if stored, False if a password was already set;
            it fails with L{KeyError} if the instance does not exist.
        """


class LookupUnavailable(Exception):
    """The lookup backend cannot answer now (Neutron down, file unreadable); C{str()} says why."""


class IInstanceLookup(Interface):
    """
    Resolves a guest's address in a network (or behind a router) to its instance.

    Exactly one of C{network_id} and C{router_id} is given.  C{ip} is the guest's address as a
    normalised string (IPv4-mapped IPv6 already turned into IPv4); C{mac} is given instead of
    using C{ip} when the guest came from an IPv6 link-local address (its MAC derived from it).
    """

    name = Attribute("Short identifier used in config and logs.")

    def lookup(ip, network_id=None, router_id=None, mac=None):
        """
        @return: a Deferred firing with C{(instance_id, project_id)}, or None if no port, or more
            than one, matches (or the port has no device); it fails with L{LookupUnavailable}
            when the backend cannot answer.
        """


class IVendordataProvider(Interface):
    """A source of vendor data for vendor_data2.json."""

    name = Attribute("The provider's name as listed in [api] vendordata_providers.")

    def vendordata(instance):
        """
        @return: a Deferred firing with a dict of top-level keys to merge into vendor_data2.json.
        """


class ICache(Interface):
    """A keyed cache with expiry whose misses are coalesced."""

    def get(key, load):
        """
        Return a Deferred of the value for C{key}; on a miss call C{load(key)} (a Deferred) once
        for all concurrent callers.
        """

    def invalidate(key):
        """Forget C{key}."""
