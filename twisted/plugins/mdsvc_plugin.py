"""twistd drop-in: ``twistd -n mdsvc --role ROLE --config-file FILE...``."""

from twisted.application.service import ServiceMaker

mdsvc = ServiceMaker("mdsvc", "mdsvc.tap", "Instance metadata service (roles: api, agent, proxy, network-node, all-in-one)", "mdsvc")
