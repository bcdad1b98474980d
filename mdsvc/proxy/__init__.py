"""Namespace proxies: one listener per tenant namespace, all in one event loop."""
