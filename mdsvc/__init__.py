"""mdsvc: an instance metadata service for OpenStack-style clouds, as one Twisted application."""

__version__ = "0.1.0"
