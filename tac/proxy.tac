# twistd -ny tac/proxy.tac   (reads $MDSVC_CONFIG): the same service as `twistd -n mdsvc --role proxy`
import os

from twisted.application import service

from mdsvc.tap import Options, makeService

application = service.Application("mdsvc-proxy")
_options = Options()
_options.parseOptions(["--role", "api"] + (["--config", os.environ["MDSVC_CONFIG"]] if os.environ.get("MDSVC_CONFIG") else []))
makeService(_options).setServiceParent(application)
