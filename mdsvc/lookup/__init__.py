"""Instance-lookup backends: (network or router, guest address) to (instance, project)."""
