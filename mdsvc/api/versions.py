# -*- test-case-name: tests.test_api_render -*-
"""The EC2 and OpenStack metadata versions, in order, and what each introduced."""

EC2_VERSIONS = (
    "1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10",
    "2007-12-15", "2008-02-01", "2008-09-01", "2009-04-04",
)
EC2_LATEST = EC2_VERSIONS[-1]

FOLSOM = "2012-08-10"       # meta_data.json, user_data
GRIZZLY = "2013-04-04"      # password, random_seed
HAVANA = "2013-10-17"       # vendor_data.json
LIBERTY = "2015-10-15"      # network_data.json, project_id
NEWTON_ONE = "2016-06-30"   # devices
NEWTON_TWO = "2016-10-06"   # vendor_data2.json
OCATA = "2017-02-22"        # vlan on NIC devices
ROCKY = "2018-08-27"        # vf_trusted on NIC devices
VICTORIA = "2020-10-14"     # dedicated_cpus
EPOXY = "2025-04-04"        # share devices

OPENSTACK_VERSIONS = (FOLSOM, GRIZZLY, HAVANA, LIBERTY, NEWTON_ONE, NEWTON_TWO, OCATA, ROCKY, VICTORIA, EPOXY)
OPENSTACK_LATEST = OPENSTACK_VERSIONS[-1]

_EC2_INDEX = {v: i for i, v in enumerate(EC2_VERSIONS)}


def ec2_version(name: str) -> str | None:
    """The EC2 version a path segment names (C{latest} is the newest), or None."""
    if name == "latest":
        return EC2_LATEST
    return name if name in _EC2_INDEX else None


def ec2_at_least(version: str, since: str) -> bool:
    """Whether EC2 C{version} is C{since} or newer (by list position)."""
    return _EC2_INDEX[version] >= _EC2_INDEX[since]


def openstack_version(name: str) -> str | None:
    """The OpenStack version a path segment names (C{latest} is the newest), or None."""
    if name == "latest":
        return OPENSTACK_LATEST
    return name if name in OPENSTACK_VERSIONS else None


def openstack_listing(today: str) -> list[str]:
    """The versions C{GET /openstack} lists: those dated today or earlier, then C{latest}."""
    return [v for v in OPENSTACK_VERSIONS if v <= today] + ["latest"]
