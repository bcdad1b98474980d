"""mdsvc: an instance metadata service for OpenStack-style clouds, as one Twisted application."""
