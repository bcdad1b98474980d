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


class IInstanceStoreFactory(Interface):
    """
    A vendor instance store, found with C{getPlugins(IInstanceStoreFactory, mdsvc.plugins)} and
    chosen by C{[mdsvc] store = NAME:ARG} (a URL's scheme is a NAME: C{redis://db:6379/0} is
    C{redis} with the argument C{//db:6379/0}). The object must also provide
    L{twisted.plugin.IPlugin}; C{sqlite} is the built-in one
    (L{mdsvc.store.sql.SQLStoreFactory}).
    """

    name = Attribute("The NAME of C{[mdsvc] store = NAME:ARG}.")

    def open(argument, config, reactor):
        """
        Open the store.

        @param argument: the text after the first colon of the option.
        @param config: the node's L{mdsvc.config.Config} (a vendor's own section:
            L{mdsvc.config.vendor_options}).
        @param reactor: the reactor (time, threads, network).
        @return: a provider of L{IInstanceStore}; if it also provides
            L{twisted.application.service.IService}, it is started and stopped with the API.
        @raise ValueError: C{argument} is unusable (one line for the operator).
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


class ICachingLookup(IInstanceLookup):
    """
    A lookup that keeps answers: the agent asks it to L{forget} one when the API answers 404 for
    the instance it gave (the port may have moved since), then looks up once more.
    """

    def forget(ip, network_id=None, router_id=None, mac=None):
        """
        Drop the kept answer of one key (the arguments of L{IInstanceLookup.lookup}), and detach
        a lookup in progress for it, so that the next lookup asks the backend again.
        """


class IVendordataProvider(Interface):
    """A source of vendor data for vendor_data2.json."""

    name = Attribute("The provider's name as listed in [api] vendordata_providers.")

    def vendordata(instance):
        """
        @return: a Deferred firing with a dict of top-level keys to merge into vendor_data2.json
            (a key an earlier provider gave is dropped, with a warning); a failure fails the
            request (500), so a provider that may do without its data returns C{{}} instead.
        """


class IVendordataProviderFactory(Interface):
    """
    A vendor data provider, found with C{getPlugins(IVendordataProviderFactory, mdsvc.plugins)}
    and chosen by its name in C{[api] vendordata_providers}. The object must also provide
    L{twisted.plugin.IPlugin}; C{DynamicJSON} is the built-in one
    (L{mdsvc.api.factory.DynamicJSONFactory}).
    """

    name = Attribute("The name listed in C{[api] vendordata_providers}.")

    def build(config, reactor):
        """
        Build the provider.

        @param config: the node's L{mdsvc.config.Config} (a vendor's own section:
            L{mdsvc.config.vendor_options}).
        @param reactor: the reactor (time, threads, network).
        @return: a provider of L{IVendordataProvider}; if it also provides
            L{twisted.application.service.IService}, it is started and stopped with the API.
        @raise ValueError: its configuration is unusable (one line for the operator).
        """


class ICache(Interface):
    """A keyed cache with expiry whose misses are coalesced."""

    def get(key, load):
        """
        Return a Deferred of the value for C{key}; on a miss call C{load(key)} (a Deferred) once
        for all concurrent callers.
        """

    def peek(key):
        """The value of C{key} if it is held and fresh, else None; never loads anything."""

    def invalidate(key):
        """Forget C{key}; a load in progress for it is not kept."""
