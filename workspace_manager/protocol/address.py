"""Parse the two address forms a location listens on: `unix:PATH` and `tcp://HOST:PORT`."""

from __future__ import annotations

import _socket  # the C module: `socket` costs ~5 ms of `wsm status` (its enums, selectors)
from collections import namedtuple

TYPE_CHECKING = False  # typing is for type checkers only: not imported at run time
if TYPE_CHECKING:
    from typing import NamedTuple, Tuple, Union

    class _Fields(NamedTuple):
        family: int  # AF_UNIX or AF_INET / AF_INET6
        target: Union[str, Tuple[str, int]]  # a path, or (host, port)
else:
    _Fields = namedtuple("Address", "family target")


class Address(_Fields):
    """Where a location listens: `family`, and `target` (a path, or (host, port))."""

    __slots__ = ()

    @property
    def is_unix(self) -> bool:
        return self.family == _socket.AF_UNIX


def parse_address(address: str) -> Address:
    """ValueError with a readable reason when `address` is neither form."""
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        if path.startswith("//"):  # tolerate unix:///abs/path
            path = path[2:]
        if not path:
            raise ValueError(f"empty socket path in {address!r}")
        return Address(_socket.AF_UNIX, path)
    if address.startswith("tcp://"):
        rest = address[len("tcp://") :]
        host, sep, port_text = rest.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"expected tcp://HOST:PORT, got {address!r}")
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range in {address!r}")
        family = _socket.AF_INET
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            family = _socket.AF_INET6
        elif ":" in host:
            family = _socket.AF_INET6
        if not host:
            raise ValueError(f"empty host in {address!r}")
        return Address(family, (host, port))
    raise ValueError(f"address must be unix:PATH or tcp://HOST:PORT, got {address!r}")


def format_address(family: int, target: Union[str, Tuple[str, int]]) -> str:
    if family == _socket.AF_UNIX:
        return f"unix:{target}"
    host, port = target[0], target[1]
    if ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{port}"
