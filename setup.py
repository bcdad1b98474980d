"""Packaging for mdsvc: the mdsvc package, its twistd drop-in and the mdsvc-manage command."""

from setuptools import find_packages, setup

setup(
    name="mdsvc",
    version="0.1.0",
    description="Instance metadata service for OpenStack-style clouds, as one Twisted application",
    python_requires=">=3.11",
    packages=find_packages(exclude=["tests*", "bench*"]) + ["twisted.plugins"],
    package_data={"mdsvc": ["data/*.json", "data/*.template"]},
    install_requires=[
        "twisted[tls]>=24.7",
        "pyOpenSSL>=21.0",  # imported by mdsvc.agent.tls (also one of Twisted's tls extras)
        "treq>=24.9",
        "attrs>=23.1",
        "zope.interface>=6.0",
        "service-identity>=24.1",
        "pyyaml>=6.0",
        "pycdlib>=1.14",
        "pyfatfs>=1.0",
        "httptools>=0.6.2",
        # [mdsvc] store = nova: Nova's databases through SQLAlchemy Core, MariaDB/MySQL through PyMySQL
        "SQLAlchemy>=2.0",
        "PyMySQL>=1.1",
        # [mdsvc] store = postgresql://...: psycopg 3, SQLAlchemy 2.1's default PostgreSQL driver
        "psycopg[binary]>=3.1",
        "jinja2>=3.0",
        # lookup = ovn: Open vSwitch's own RFC 7047 client and IDL (what ovsdbapp and Neutron use)
        "ovs>=3.4.1",
        # [mdsvc] metrics_endpoint: the Prometheus exposition
        "prometheus-client>=0.20",
    ],
    # What the suite and `make check` import besides the product's own requirements (the real
    # metadata clients the integration tests drive live in a virtualenv of their own:
    # tests/integration/clients/install.sh).
    extras_require={"test": ["pytest>=8", "cryptography", "ruff", "mypy", "mypy-zope", "types-PyYAML"]},
    entry_points={"console_scripts": ["mdsvc-manage = mdsvc.manage:main"]},
)
