"""Listening sockets for the web server: every address of a name on one port, or one
dual-stack socket for `:PORT`; and the share of open files it may use."""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
from typing import List, Optional, Tuple

_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn
# A name may resolve to addresses this host cannot bind (::1 with IPv6 disabled): skip those.
_UNBINDABLE = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)


def fd_budget() -> int:
    """Half the soft open-file limit: the manager's own files and locations keep the rest."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 512
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(16, soft // 2)


async def bind_listeners(host: str, port: int) -> List[socket.socket]:
    """Listening sockets for `host:port`: `""` is every interface (one dual-stack socket);
    a name binds every address it resolves to on one port (the first picks it when `port`
    is 0, retried a few times if another process takes it meanwhile). Raises OSError."""
    if host == "":
        return [_bind_all_interfaces(port)]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    addresses: List[Tuple[int, tuple]] = list(dict.fromkeys((info[0], info[4]) for info in infos))
    attempts = 5 if port == 0 else 1
    for attempt in range(attempts):
        try:
            return _bind_same_port(addresses, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _listening_socket(family: int, sockaddr: tuple, dual_stack: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.bind(sockaddr)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_all_interfaces(port: int) -> socket.socket:
    """`:PORT`: one dual-stack IPv6 socket (IPv4 too), or plain IPv4 where IPv6 is off."""
    if socket.has_ipv6:
        try:
            return _listening_socket(socket.AF_INET6, ("::", port), dual_stack=True)
        except OSError as exc:
            if exc.errno not in _UNBINDABLE:
                raise
    return _listening_socket(socket.AF_INET, ("0.0.0.0", port))


def _bind_same_port(addresses: List[Tuple[int, tuple]], port: int) -> List[socket.socket]:
    """Bind every address on one port: the first one picks it when `port` is 0."""
    sockets: List[socket.socket] = []
    last_error: Optional[OSError] = None
    try:
        for family, sockaddr in addresses:
            wanted = port or (sockets[0].getsockname()[1] if sockets else 0)
            try:
                sockets.append(_listening_socket(family, (sockaddr[0], wanted, *sockaddr[2:])))
            except OSError as exc:
                if exc.errno not in _UNBINDABLE:
                    raise
                last_error = exc
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise last_error or OSError(errno.EADDRNOTAVAIL, "no address to bind")
    return sockets
