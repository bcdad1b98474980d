# twistd -ny tac/network-node.tac   (reads $MDSVC_CONFIG): the same service as `twistd -n mdsvc --role network-node`
from twisted.application import service

from mdsvc.tap import tac_service

application = service.Application("mdsvc-network-node")
tac_service("network-node").setServiceParent(application)
