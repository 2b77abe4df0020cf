"""A TCP proxy a test controls: forward, partition (stall both ways), cut (reset), resume.

It runs its own asyncio loop in a background thread, so synchronous tests and real service
processes can both use it. Point a client at ``127.0.0.1:<proxy.port>`` instead of the server.

- ``partition()``: no byte moves in either direction and new connections wait, but every TCP
  connection stays open: what a network partition (or a stalled peer) looks like to both ends.
  Heartbeat timeouts are what notice it.
- ``heal()``: bytes flow again; connections a side closed meanwhile are closed through.
- ``cut()``: every connection is reset now and new ones are refused until ``resume()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Any


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections_total = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="proxy")
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._refusing = False
        self._transports: set[asyncio.WriteTransport] = set()

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(10)

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def partition(self) -> None:
        self._call(self._set_flowing(False))

    def heal(self) -> None:
        self._call(self._set_flowing(True))

    def cut(self) -> None:
        self._call(self._cut())

    def resume(self) -> None:
        self._call(self._resume())

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _cut(self) -> None:
        self._refusing = True
        for transport in list(self._transports):
            transport.abort()

    async def _resume(self) -> None:
        self._refusing = False

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()
        assert self._flowing is not None
        self._flowing.set()  # let stalled pipes see their closed transports and end

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        if self._refusing:
            writer.transport.abort()
            return
        await self._flowing.wait()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections_total += 1
        self._transports.update((writer.transport, upstream_writer.transport))
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
            )
        finally:
            self._transports.discard(writer.transport)
            self._transports.discard(upstream_writer.transport)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(65536)
                if not data:
                    break
                # Bytes read just as a partition began are held, not dropped.
                await self._flowing.wait()
                if self._refusing:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if self._refusing:
                writer.transport.abort()
            else:
                writer.close()
