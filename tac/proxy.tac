# twistd -ny tac/proxy.tac   (reads $MDSVC_CONFIG): the same service as `twistd -n mdsvc --role proxy`
from twisted.application import service

from mdsvc.tap import tac_service

application = service.Application("mdsvc-proxy")
tac_service("proxy").setServiceParent(application)
