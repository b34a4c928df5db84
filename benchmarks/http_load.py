"""A small HTTP/1.1 load generator on asyncio: one request at a time per
kept-alive connection, latencies in seconds.

    sequential(port, make, seconds)       one client, each request after the last
    open_loop(port, make, rate, seconds)  requests at fixed times, whatever the answers do

``open_loop`` is the measure of latency under load: request i is due at
``start + i / rate`` and its latency counts from then, not from when a
connection was free to send it. A closed loop (each client waits for its
answer before the next request) lets a slow answer hold back the requests
queued behind it, and they are never measured late: the coordinated-omission
trap. Here a request that finds every connection busy waits in a queue, and
that wait is part of its latency. The generator's own lag (how late it sent
a request it was free to send) is reported beside.

Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"
_LENGTH = re.compile(rb"(?i)\r\ncontent-length:[ \t]*(\d+)")


class Conn(asyncio.Protocol):
    """One kept-alive connection; ``send`` calls back with the answer's status
    (0 when the connection was lost) and the time it was complete."""

    def __init__(self, on_lost: Callable[[Conn], None] | None = None):
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.answered: Callable[[int, float], None] | None = None
        self.lost = False
        self.on_lost = on_lost

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        m = _LENGTH.search(self.buf, 0, end + 2)
        total = end + 4 + (int(m.group(1)) if m else 0)
        if len(self.buf) < total:
            return
        now = time.perf_counter()
        status = int(self.buf[9:12])
        del self.buf[:total]
        done, self.answered = self.answered, None
        if done is not None:
            done(status, now)

    def connection_lost(self, exc) -> None:
        self.lost = True
        done, self.answered = self.answered, None
        if done is not None:
            done(0, time.perf_counter())
        if self.on_lost is not None:
            self.on_lost(self)

    def send(self, request: bytes, answered: Callable[[int, float], None]) -> None:
        if self.lost:
            answered(0, time.perf_counter())
            return
        self.answered = answered
        self.transport.write(request)

    async def ask(self, request: bytes) -> tuple[int, float]:
        """(status, seconds) of one request."""
        fut = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        self.send(request, lambda status, at: fut.set_result((status, at - started)))
        return await fut

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int, on_lost: Callable[[Conn], None] | None = None) -> Conn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: Conn(on_lost), LOOPBACK, port)
    return conn


def get(path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", "content-type: application/json",
             f"content-length: {len(body)}"]  # fmt: skip
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    lag: list[float] = field(default_factory=list)  # open loop: sent this late
    offered: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def errors(self, ok: int) -> int:
        return sum(n for status, n in self.statuses.items() if status != ok)


async def sequential(
    port: int, make: Callable[[int], bytes], seconds: float, limit: int = 100_000, warm: int = 2
) -> Result:
    """One connection, one request after another for ``seconds`` (at most
    ``limit`` requests); the first ``warm`` are not counted."""
    conn = await connect(port)
    out = Result()
    try:
        for i in range(warm):
            await conn.ask(make(-1 - i))
        start = time.perf_counter()
        deadline = start + seconds
        for i in range(limit):
            if time.perf_counter() >= deadline:
                break
            status, took = await conn.ask(make(i))
            out.statuses[status] += 1
            out.latencies.append(took)
        out.seconds = time.perf_counter() - start
    finally:
        conn.close()
    return out


async def open_loop(
    port: int,
    make: Callable[[int], bytes],
    rate: float,
    seconds: float,
    conns: int = 32,
    grace: float = 10.0,
) -> Result:
    """``rate`` requests a second for ``seconds`` over ``conns`` connections,
    each request's latency from the time it was due. Requests not answered
    within ``grace`` seconds after the last one was due are left out
    (``offered`` minus answered says how many). A connection the server closes
    (an idle one, after its header timeout) is replaced, a few times over at
    most; a request it was carrying counts as answered with status 0."""
    loop = asyncio.get_running_loop()
    pool: list[Conn] = []
    connecting: set[asyncio.Task] = set()
    idle: list[Conn] = []
    waiting: deque[int] = deque()
    replacements = [conns * 4]

    def lost(conn: Conn) -> None:
        if conn in idle:
            idle.remove(conn)
        if replacements[0] > 0:
            replacements[0] -= 1
            task = loop.create_task(replace())
            connecting.add(task)
            task.add_done_callback(connecting.discard)

    async def replace() -> None:
        try:
            conn = await connect(port, lost)
        except OSError:
            return
        pool.append(conn)
        if waiting:
            dispatch(conn, waiting.popleft())
        else:
            idle.append(conn)

    for _ in range(conns):
        pool.append(await connect(port, lost))
    idle += pool
    n = max(1, round(rate * seconds))
    out = Result(offered=n)
    everything = loop.create_future()
    start = time.perf_counter() + 0.02

    def due(i: int) -> float:
        return start + i / rate

    def dispatch(conn: Conn, i: int) -> None:
        def answered(status: int, at: float) -> None:
            out.latencies.append(at - due(i))
            out.statuses[status] += 1
            if waiting and not conn.lost:
                dispatch(conn, waiting.popleft())
            elif not conn.lost:
                idle.append(conn)
            if len(out.latencies) == n and not everything.done():
                everything.set_result(None)

        conn.send(make(i), answered)

    try:
        i = 0
        while i < n:
            now = time.perf_counter()
            while i < n and due(i) <= now:
                out.lag.append(now - due(i))
                if idle:
                    dispatch(idle.pop(), i)
                else:
                    waiting.append(i)
                i += 1
            if i < n:
                await asyncio.sleep(max(0.0, due(i) - time.perf_counter()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everything, grace)
        out.seconds = time.perf_counter() - start
    finally:
        replacements[0] = 0
        for task in list(connecting):
            task.cancel()
        for conn in pool:
            conn.close()
    return out


def pct(values: list[float], p: float) -> float:
    """The p-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]
