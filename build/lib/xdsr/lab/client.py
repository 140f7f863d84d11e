"""A traffic client for the lab: which backend served each connection/flow?

    python -m xdsr.lab.client tcp HOST PORT --conns 50 --interval-ms 100 --duration 3
    python -m xdsr.lab.client tcp HOST PORT --conns 50 --until-signalled
    python -m xdsr.lab.client udp HOST PORT --flows 500

TCP: opens K connections (each its own source port), sends a line on each
every X ms and records the sequence of answers -- the echo server
(xdsr.lab.echo) answers with its name, so a connection that changes
backend, or breaks (reset, timeout, closed), shows. With
--until-signalled the connections stay open until SIGTERM/SIGINT: the mode
for fault tests, which break things while the traffic flows.

UDP: F flows, each a connected socket with its own source port (so only a
reply from HOST:PORT counts -- an L2DSR backend replying from the wrong
address shows up as a timeout), one datagram each, one reply awaited.

Output is JSON lines on stdout:
  {"event": "ready", ...}    connections established (TCP) / flows started (UDP)
  {"event": "broken", ...}   a TCP connection failed (as it happens)
  {"event": "result", ...}   the full record, last line
Only the standard library, so it starts fast inside `ip netns exec`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from xdsr.lab._limits import raise_fd_limit


@dataclass
class ConnRecord:
    id: int
    local_port: int | None = None
    replies: list[str] = field(default_factory=list)
    sent: int = 0
    error: str | None = None  # "refused", "reset", "timeout", "closed", "connect-timeout", other errno text
    error_after: float | None = None  # seconds since the start


@dataclass
class FlowRecord:
    id: int
    local_port: int | None = None
    reply: str | None = None
    error: str | None = None
    rtt_ms: float | None = None


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _classify(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, (asyncio.IncompleteReadError, EOFError, BrokenPipeError)):
        return "closed"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


async def _tcp_conn(
    rec: ConnRecord,
    host: str,
    port: int,
    interval: float,
    reply_timeout: float,
    connect_timeout: float,
    connected: asyncio.Queue[int],
    stop: asyncio.Event,
    t0: float,
) -> None:
    writer: asyncio.StreamWriter | None = None
    try:
        try:
            reader, w = await asyncio.wait_for(asyncio.open_connection(host, port), connect_timeout)
        except TimeoutError:
            rec.error = "connect-timeout"
            raise
        finally:
            connected.put_nowait(rec.id)
        writer = w
        rec.local_port = writer.get_extra_info("sockname")[1]
        while not stop.is_set():
            writer.write(f"{rec.sent}\n".encode())
            rec.sent += 1
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), reply_timeout)
            if not line:
                raise EOFError
            rec.replies.append(line.decode().strip())
            # Wait for the next tick or for the stop signal, whichever first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    except Exception as exc:
        if rec.error is None:
            rec.error = _classify(exc)
        rec.error_after = round(time.monotonic() - t0, 3)
        _emit({"event": "broken", "id": rec.id, "local_port": rec.local_port, "error": rec.error})
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def run_tcp(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit(args.conns + 64)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    t0 = time.monotonic()
    connected: asyncio.Queue[int] = asyncio.Queue()
    recs = [ConnRecord(i) for i in range(args.conns)]
    tasks = [
        asyncio.create_task(
            _tcp_conn(
                r,
                args.host,
                args.port,
                args.interval_ms / 1000,
                args.reply_timeout,
                args.connect_timeout,
                connected,
                stop,
                t0,
            )
        )
        for r in recs
    ]
    for _ in recs:
        await connected.get()
    _emit({"event": "ready", "mode": "tcp", "connected": sum(1 for r in recs if r.error is None)})
    if not args.until_signalled:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
        stop.set()
    else:
        await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "event": "result",
        "mode": "tcp",
        "target": [args.host, args.port],
        "elapsed": round(time.monotonic() - t0, 3),
        "connections": [asdict(r) for r in recs],
    }


async def _udp_flow(
    rec: FlowRecord, sock: socket.socket, timeout: float, sem: asyncio.Semaphore, payload: bytes
) -> None:
    loop = asyncio.get_running_loop()
    async with sem:
        try:
            t = time.monotonic()
            await loop.sock_sendall(sock, payload)
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)
            rec.rtt_ms = round((time.monotonic() - t) * 1000, 3)
            rec.reply = data.decode(errors="replace").strip()
        except Exception as exc:
            rec.error = _classify(exc)


async def run_udp(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    raise_fd_limit(args.flows + 64)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    recs = [FlowRecord(i) for i in range(args.flows)]
    socks: list[socket.socket] = []
    try:
        # Every socket is open before the first datagram leaves and stays
        # open to the end, so the flows' source ports are all distinct.
        # connect(): the kernel then only delivers replies from host:port.
        for rec in recs:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.setblocking(False)
            sock.connect((args.host, args.port))
            rec.local_port = sock.getsockname()[1]
        _emit({"event": "ready", "mode": "udp", "flows": args.flows})
        sem = asyncio.Semaphore(args.concurrency)
        await asyncio.gather(
            *(_udp_flow(r, s, args.reply_timeout, sem, f"{r.id}\n".encode()) for r, s in zip(recs, socks, strict=True))
        )
    finally:
        for sock in socks:
            sock.close()
    return {
        "event": "result",
        "mode": "udp",
        "target": [args.host, args.port],
        "elapsed": round(time.monotonic() - t0, 3),
        "flows": [asdict(r) for r in recs],
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m xdsr.lab.client", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    tcp = sub.add_parser("tcp", help="K long connections, a line every X ms")
    tcp.add_argument("host")
    tcp.add_argument("port", type=int)
    tcp.add_argument("--conns", type=int, default=10)
    tcp.add_argument("--interval-ms", type=float, default=100.0)
    tcp.add_argument("--duration", type=float, default=2.0, help="seconds (ignored with --until-signalled)")
    tcp.add_argument("--until-signalled", action="store_true", help="run until SIGTERM/SIGINT")
    tcp.add_argument("--reply-timeout", type=float, default=2.0)
    tcp.add_argument("--connect-timeout", type=float, default=3.0)
    udp = sub.add_parser("udp", help="F flows, one datagram each")
    udp.add_argument("host")
    udp.add_argument("port", type=int)
    udp.add_argument("--flows", type=int, default=100)
    udp.add_argument("--reply-timeout", type=float, default=2.0)
    udp.add_argument("--concurrency", type=int, default=256, help="datagrams awaiting a reply at once")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = asyncio.run(run_tcp(args) if args.mode == "tcp" else run_udp(args))
    _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
