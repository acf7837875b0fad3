"""An emulated network link for command-line clients: a TCP relay that limits rate and adds latency.

Chromium's rows emulate their link inside the browser (bench/browser.py). `curl` and `aperture
download` have no such switch, and the kernel's netem is not there on every machine, so the
download's link row sends both through this relay instead: each side of a connection goes through
a one-way "wire" that lets `rate` bytes per second through and delivers each chunk `delay` seconds
after it has been sent. The rate is shared by all of a link's connections in the same direction,
as on a real access link, so parallel streams cannot add bandwidth the link does not have.

Every connection is relayed to one target (the imaging server); the relay runs its own event loop
in a daemon thread of the benchmark, using a small fraction of a core at the rates used here.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass

CHUNK = 64 * 1024
QUEUED_CHUNKS = 16  # per direction and connection: about 1 MiB in flight, like a router's buffer


@dataclass(frozen=True)
class LinkSpec:
    """Bits per second each way and the one-way delay (half the round trip) in seconds."""

    bits_per_second: float
    one_way_delay: float

    @property
    def label(self) -> str:
        return f"{self.bits_per_second / 1e6:g} Mbit/s, {self.one_way_delay * 2000:g} ms round trip"


class _Wire:
    """One direction of the link: chunks leave one after the other at the link's rate, then travel `delay`."""

    def __init__(self, spec: LinkSpec) -> None:
        self.bytes_per_second = spec.bits_per_second / 8
        self.delay = spec.one_way_delay
        self.free_at = 0.0  # loop time when the wire has finished sending what it was given

    def schedule(self, now: float, size: int) -> float:
        """When a chunk of `size` bytes handed over at `now` reaches the other end."""
        self.free_at = max(self.free_at, now) + size / self.bytes_per_second
        return self.free_at + self.delay


class Link:
    """A relay on 127.0.0.1 to `target_port`, shaped by `spec`; `url` is where clients connect."""

    def __init__(self, target_port: int, spec: LinkSpec) -> None:
        self.target_port = target_port
        self.spec = spec
        self._up = _Wire(spec)
        self._down = _Wire(spec)
        self._loop = asyncio.new_event_loop()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="bench-link", daemon=True)
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Link:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, sock=self._listener))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:  # connections still open (kept alive by a client) end with the link
            server.close()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    async def _connection(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_out.close()
            return
        for writer in (client_out, server_out):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await self._sleep(self.spec.one_way_delay * 2)  # the TCP handshake's round trip
        await asyncio.gather(
            self._relay(client_in, server_out, self._up),
            self._relay(server_in, client_out, self._down),
            return_exceptions=True,
        )
        for writer in (client_out, server_out):
            writer.close()

    async def _relay(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, wire: _Wire) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUED_CHUNKS)

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await self._sleep(due - self._loop.time())
                if not data:
                    if sink.can_write_eof():
                        sink.write_eof()
                    return
                sink.write(data)
                await sink.drain()

        delivery = asyncio.ensure_future(deliver())
        try:
            while data := await source.read(CHUNK):
                await queue.put((wire.schedule(self._loop.time(), len(data)), data))
            await queue.put((wire.schedule(self._loop.time(), 0), b""))
            await delivery
        except (ConnectionError, OSError):
            delivery.cancel()
            sink.close()

    @staticmethod
    async def _sleep(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)
