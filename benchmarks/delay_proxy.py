"""Network distance in user space: a TCP proxy that delays every chunk by a
one-way time, and a server that answers at once (the far end of a link floor).

This kernel has no netem, so a link of one-way time D is a proxy on loopback:
each chunk read from one side is written to the other D later, in order, in
both directions. A request and its answer over a kept-alive connection then
take 2D plus what the server spends. The same proxy in front of ``answer`` (a
server that replies to every request the moment it has read it) is the link's
floor: what no server behind that link can beat.

Run as a process of its own, so its timers do not share a loop with the
client that measures it:

    python delay_proxy.py --link DELAY_MS:UPSTREAM_PORT ... [--answer]

It listens on 127.0.0.1 only (a free port per link, and one for the answer
server when asked), prints ``{"links": [port, ...], "answer": port}`` as one
line, and serves until its standard input closes. ``--link DELAY_MS:answer``
puts a link in front of its own answer server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys

LOOPBACK = "127.0.0.1"
_LENGTH = re.compile(rb"(?i)\r\ncontent-length:[ \t]*(\d+)")
_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class _Delayed:
    """Writes chunks to ``writer`` ``delay`` seconds after they were read, in order."""

    def __init__(self, writer: asyncio.StreamWriter, delay: float):
        self.loop = asyncio.get_running_loop()
        self.writer = writer
        self.delay = delay
        self.last = 0.0

    def _at(self) -> float:
        # Strictly increasing, so the loop's timer heap keeps the chunks' order.
        self.last = max(self.loop.time() + self.delay, self.last + 1e-9)
        return self.last

    def _write(self, chunk: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(chunk)

    def _end(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()

    def send(self, chunk: bytes) -> None:
        self.loop.call_at(self._at(), self._write, chunk)

    def close(self) -> None:
        self.loop.call_at(self._at(), self._end)


async def _pump(reader: asyncio.StreamReader, out: _Delayed) -> None:
    try:
        while chunk := await reader.read(65536):
            out.send(chunk)
    except ConnectionError:
        pass
    out.close()


async def _link(delay: float, upstream: int, reader, writer) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(LOOPBACK, upstream)
    except OSError:
        writer.close()
        return
    await asyncio.gather(
        _pump(reader, _Delayed(up_writer, delay)), _pump(up_reader, _Delayed(writer, delay))
    )


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read each request (its headers and Content-Length bytes of body), answer at once."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            m = _LENGTH.search(head)
            if m:
                await reader.readexactly(int(m.group(1)))
            writer.write(_ANSWER)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    writer.close()


async def serve(links: list[tuple[float, str]], answer: bool) -> None:
    servers, ports = [], []
    answer_port = None
    if answer or any(up == "answer" for _, up in links):
        srv = await asyncio.start_server(_answer, LOOPBACK, 0)
        servers.append(srv)
        answer_port = srv.sockets[0].getsockname()[1]
    for delay_ms, upstream in links:
        port = answer_port if upstream == "answer" else int(upstream)

        async def handle(r, w, delay=delay_ms / 1000, port=port):
            await _link(delay, port, r, w)

        srv = await asyncio.start_server(handle, LOOPBACK, 0)
        servers.append(srv)
        ports.append(srv.sockets[0].getsockname()[1])
    print(json.dumps({"links": ports, "answer": answer_port}), flush=True)
    # Serve until the parent closes our standard input (or goes away).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for srv in servers:
        srv.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--link", action="append", default=[], metavar="DELAY_MS:UPSTREAM_PORT")
    ap.add_argument("--answer", action="store_true", help="also serve an answer-at-once server")
    args = ap.parse_args()
    links = []
    for spec in args.link:
        delay, _, upstream = spec.partition(":")
        links.append((float(delay), upstream))
    asyncio.run(serve(links, args.answer))


if __name__ == "__main__":
    main()
