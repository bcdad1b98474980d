"""The Nova-compatible metadata API: identification, the EC2 and OpenStack trees, caching."""
