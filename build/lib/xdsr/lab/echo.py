"""A backend server for the lab: answers with its name, so a client sees
which backend serves it.

    python -m xdsr.lab.echo --name NAME --tcp-port 80 --udp-port 5001

TCP: one line `NAME` for every line received, for the connection's whole
life. UDP: one datagram `NAME` for every datagram.

It binds the wildcard address, as an L2DSR backend must: requests arrive
for the VIP, which sits on `lo`. A TCP connection's replies naturally come
from the address the client connected to; for UDP a wildcard socket's
replies would leave with the address of the outgoing interface, so the
server reads each datagram's destination (IP_PKTINFO) and replies from it.

When both sockets are bound it prints one JSON line, {"event": "ready", ...},
so the lab knows it can send traffic. SIGTERM or SIGINT stop it cleanly.
Only the standard library: it starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import signal
import socket
import struct
import sys
from dataclasses import dataclass

from xdsr.lab._limits import raise_fd_limit

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python 3.11 does not export it
IPV6_RECVPKTINFO = socket.IPV6_RECVPKTINFO
IPV6_PKTINFO = socket.IPV6_PKTINFO
_CMSG_SPACE = socket.CMSG_SPACE(64)


@dataclass
class Stats:
    tcp_connections: int = 0
    tcp_lines: int = 0
    udp_datagrams: int = 0


async def _serve_tcp_conn(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: bytes, stats: Stats
) -> None:
    stats.tcp_connections += 1
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            stats.tcp_lines += 1
            writer.write(reply)
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # the client went away: nothing to report to it
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _bound_socket(family: int, kind: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        # One socket per family: a dual-stack socket would report IPv4
        # peers as ::ffff:a.b.c.d and need IPv6 pktinfo for IPv4 replies.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if kind == socket.SOCK_DGRAM:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _reply_cmsg(family: int, ancdata: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """Ancillary data that makes the reply's source the request's destination."""
    for level, ctype, data in ancdata:
        if family == socket.AF_INET and level == socket.IPPROTO_IP and ctype == IP_PKTINFO:
            # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
            _ifindex, _spec_dst, addr = struct.unpack("i4s4s", data[:12])
            return [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("i4s4s", 0, addr, b"\0" * 4))]
        if family == socket.AF_INET6 and level == socket.IPPROTO_IPV6 and ctype == IPV6_PKTINFO:
            # struct in6_pktinfo { in6_addr addr; int ifindex; }
            addr = data[:16]
            return [(socket.IPPROTO_IPV6, IPV6_PKTINFO, struct.pack("16si", addr, 0))]
    return []


def _on_udp_readable(sock: socket.socket, family: int, reply: bytes, stats: Stats) -> None:
    # Drain everything queued: one wake-up may stand for many datagrams.
    while True:
        try:
            _data, ancdata, _flags, addr = sock.recvmsg(65535, _CMSG_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # e.g. an ICMP error queued on the socket; keep serving
        stats.udp_datagrams += 1
        with contextlib.suppress(OSError):
            sock.sendmsg([reply], _reply_cmsg(family, ancdata), 0, addr)


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def serve(name: str, tcp_port: int | None, udp_port: int | None, host: str | None = None) -> None:
    raise_fd_limit(65536)  # one socket per client connection
    loop = asyncio.get_running_loop()
    reply = (name + "\n").encode()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    families = [socket.AF_INET]
    if _ipv6_available():
        families.append(socket.AF_INET6)
    if host is not None:
        families = [socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET]

    stats = Stats()
    servers: list[asyncio.Server] = []
    udp_socks: list[tuple[socket.socket, int]] = []
    for fam in families:
        bind = host or ("::" if fam == socket.AF_INET6 else "0.0.0.0")
        if tcp_port is not None:
            sock = _bound_socket(fam, socket.SOCK_STREAM, bind, tcp_port)
            servers.append(
                await asyncio.start_server(lambda r, w: _serve_tcp_conn(r, w, reply, stats), sock=sock, backlog=4096)
            )
        if udp_port is not None:
            sock = _bound_socket(fam, socket.SOCK_DGRAM, bind, udp_port)
            udp_socks.append((sock, fam))
            loop.add_reader(sock.fileno(), _on_udp_readable, sock, fam, reply, stats)

    print(
        json.dumps(
            {
                "event": "ready",
                "name": name,
                "tcp": tcp_port,
                "udp": udp_port,
                "families": [6 if f == socket.AF_INET6 else 4 for f in families],
            }
        ),
        flush=True,
    )
    await stop.wait()
    for s in servers:
        s.close()
    for sock, _fam in udp_socks:
        loop.remove_reader(sock.fileno())
        sock.close()
    print(
        json.dumps(
            {
                "event": "stopped",
                "name": name,
                "tcp_connections": stats.tcp_connections,
                "tcp_lines": stats.tcp_lines,
                "udp_datagrams": stats.udp_datagrams,
            }
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xdsr.lab.echo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="what to answer with")
    ap.add_argument("--tcp-port", type=int, default=None)
    ap.add_argument("--udp-port", type=int, default=None)
    ap.add_argument("--host", default=None, help="bind this address instead of the wildcard (not for L2DSR)")
    args = ap.parse_args(argv)
    if args.tcp_port is None and args.udp_port is None:
        ap.error("give --tcp-port and/or --udp-port")
    try:
        asyncio.run(serve(args.name, args.tcp_port, args.udp_port, args.host))
    except OSError as exc:
        print(json.dumps({"event": "error", "error": str(exc)}), flush=True)
        print(f"echo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
