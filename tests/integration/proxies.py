"""TCP proxies the integration tests put between clients and servers: one that cuts every connection (a
network that drops), one that balances new connections over several servers (a load balancer)."""

from __future__ import annotations

import asyncio
import itertools


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, carried: set[asyncio.StreamWriter],
                held: asyncio.Event | None = None) -> None:  # fmt: skip
    """Copy ``source`` to ``sink`` until either end goes, then abort ``sink``: a connection that ends on one
    side ends on the other. ``held``: while cleared, what comes is held until it is set, then dropped."""
    try:
        while data := await source.read(65536):
            if held is not None and not held.is_set():
                await held.wait()  # till the cut, which aborts ``sink``: these bytes are lost
                return
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        sink.transport.abort()
        carried.discard(sink)


class CuttingProxy:
    """A TCP proxy in front of the server whose ``cut`` aborts every connection it carries (as a network
    that drops), and which keeps accepting new ones. ``hold_replies`` stops what the server sends from
    reaching the client until the cut (which loses it)."""

    def __init__(self, upstream: str):
        self.host, self.port = upstream.removeprefix("http://").split(":")
        self.connections: set[asyncio.StreamWriter] = set()
        self.replying = asyncio.Event()
        self.replying.set()

    def hold_replies(self) -> None:
        self.replying.clear()

    async def __aenter__(self) -> CuttingProxy:
        self.server = await asyncio.start_server(self._carry, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        self.server.close()

    def cut(self) -> int:
        carried = len(self.connections) // 2
        for writer in list(self.connections):
            writer.transport.abort()
        self.connections.clear()
        self.replying.set()  # new connections are carried both ways
        return carried

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, int(self.port))
        self.connections |= {writer, up_writer}

        await asyncio.gather(_pipe(reader, up_writer, self.connections),
                             _pipe(up_reader, writer, self.connections, self.replying))


class BalancingProxy:
    """A load balancer in front of several servers: each new connection goes to the next server in turn that
    accepts it (one that refuses, a dead process, is passed over), with no stickiness. A connection whose
    server goes away is closed on the client's side too."""

    def __init__(self, upstreams: list[str]):
        self.upstreams = [u.removeprefix("http://").split(":") for u in upstreams]
        self.turn = itertools.cycle(range(len(upstreams)))
        self.connections: set[asyncio.StreamWriter] = set()
        self.served: list[int] = []  # the upstream of each connection carried, by index

    async def __aenter__(self) -> BalancingProxy:
        self.server = await asyncio.start_server(self._carry, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in list(self.connections):
            writer.transport.abort()
        self.server.close()

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in self.upstreams:
            index = next(self.turn)
            host, port = self.upstreams[index]
            try:
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
            except OSError:
                continue
            break
        else:
            writer.transport.abort()
            return
        self.served.append(index)
        self.connections |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer, self.connections), _pipe(up_reader, writer, self.connections))
