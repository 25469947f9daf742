"""Redis: every key in Redis' own serialization (DUMP), restored in one MULTI/EXEC.

A snapshot of RDB-encoded values rather than an RDB file: loading an RDB file
needs a restart of the server with access to its disk, while DUMP/RESTORE
works over the network, and the transaction makes the restore all or nothing.
Restoring replaces the database: it is emptied first, in the same transaction.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import redis
from redis.exceptions import RedisError

from ..errors import RestoreFailed, SourceUnreachable, Tampered

__all__ = ["RedisSource"]

MAGIC = b"RMPRDS1\n"
_RECORD = struct.Struct("!IqI")  # key length, ttl in ms (0: none), value length


class RedisSource:
    kind = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10)

    def dump(self) -> Iterator[bytes]:
        try:
            self.client.ping()
            yield MAGIC
            for key in self.client.scan_iter(count=1000):
                payload = self.client.dump(key)
                ttl = self.client.pttl(key)
                if payload is None or ttl == -2:  # expired or deleted meanwhile
                    continue
                data = bytes(payload)
                yield _RECORD.pack(len(key), max(int(ttl), 0), len(data)) + key + data
        except RedisError as error:
            raise SourceUnreachable(f"redis: {error}") from error

    def restore(self, staged: str, throwaway: bool = False) -> None:
        with open(staged, "rb") as source:
            if source.read(len(MAGIC)) != MAGIC:
                raise Tampered("not a Redis snapshot")
            try:
                self.client.ping()
                pipe = self.client.pipeline(transaction=True)
                pipe.flushdb()
                while head := source.read(_RECORD.size):
                    key_length, ttl, value_length = _RECORD.unpack(head)
                    key = source.read(key_length)
                    value = source.read(value_length)
                    pipe.restore(key, ttl, value, replace=True)
                pipe.execute()
            except redis.ConnectionError as error:
                raise SourceUnreachable(f"redis: {error}") from error
            except RedisError as error:
                raise RestoreFailed(
                    f"redis refused the restore; nothing changed: {error}"
                ) from error

    def probe(self) -> str | None:
        # Its own client with short timeouts: one attempt must not outlast a drill's wait.
        client = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        except RedisError as error:
            return str(error)
        finally:
            client.close()
        return None

    def server_version(self) -> str | None:
        try:
            info = self.client.info("server")
        except RedisError as error:
            raise SourceUnreachable(f"redis: {error}") from error
        return str(info["redis_version"])

    def inventory(self) -> dict[str, int]:
        try:
            return {"keys": int(self.client.dbsize())}
        except RedisError as error:
            raise SourceUnreachable(f"redis: {error}") from error
