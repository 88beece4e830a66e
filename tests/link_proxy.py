"""A cuttable TCP link for fault tests (importable by name: `tests/` is on pytest's pythonpath):
the network between a region's NATS and the hub, in tests/integration/test_nats_regions.py and
tests/faults/fault_stack.py."""

from __future__ import annotations

import asyncio
import threading

from tessera_ops.servers import free_port


class LinkProxy:
    """A TCP relay standing in for the network between a region and the hub: `cut()` drops
    every connection and refuses new ones until `heal()`. Runs its own event loop thread, so
    blocking helpers (server starts and restarts, wait_for_leaf) can run meanwhile."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._open = True
        self._transports: set[asyncio.WriteTransport] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5), "proxy did not start"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._transports |= {writer.transport, up_writer.transport}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def _cut(self) -> None:
        self._open = False
        for transport in self._transports:
            transport.abort()
        self._transports.clear()

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._cut)

    def heal(self) -> None:
        self._open = True

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
