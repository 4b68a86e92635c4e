"""A real redis-server for the fleet tests (keyproxy.emulator.devstack.RedisServer, shared with the benchmarks)."""

from keyproxy.emulator.devstack import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
