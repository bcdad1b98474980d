"""
Nova's own metadata WSGI application (C{nova.wsgi.metadata}, the entry point nova-api-metadata is
deployed with), for gunicorn in the Nova virtualenv:

    OS_NOVA_CONFIG_DIR=DIR NOVA-VENV/bin/gunicorn -w 1 -b 127.0.0.1:PORT \\
        --chdir tests/integration nova_metadata_wsgi:application

C{DIR} holds Nova's C{api-paste.ini} and the C{nova.conf} to run with. Nova parses C{sys.argv} as
its own command line: gunicorn's arguments are taken off first.
"""

import sys

sys.argv = ["nova-api-metadata"]

from nova.wsgi.metadata import application  # noqa: E402

__all__ = ["application"]
