# twistd -ny tac/agent.tac   (reads $MDSVC_CONFIG): the same service as `twistd -n mdsvc --role agent`
from twisted.application import service

from mdsvc.tap import tac_service

application = service.Application("mdsvc-agent")
tac_service("agent").setServiceParent(application)
