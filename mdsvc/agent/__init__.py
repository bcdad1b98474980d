"""The metadata agent: UNIX-socket server, lookup, signing, pooled forwarding to the API, rate limits."""
