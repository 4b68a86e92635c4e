"""A real redis-server for the fleet tests (keyproxy.devstack.RedisServer, shared with the benchmarks)."""

from keyproxy.devstack import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
