# twistd -ny tac/all-in-one.tac   (reads $MDSVC_CONFIG): the same service as `twistd -n mdsvc --role all-in-one`
from twisted.application import service

from mdsvc.tap import tac_service

application = service.Application("mdsvc-all-in-one")
tac_service("all-in-one").setServiceParent(application)
