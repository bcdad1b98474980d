# twistd -ny tac/api.tac   (reads $MDSVC_CONFIG): the same service as `twistd -n mdsvc --role api`
from twisted.application import service

from mdsvc.tap import tac_service

application = service.Application("mdsvc-api")
tac_service("api").setServiceParent(application)
