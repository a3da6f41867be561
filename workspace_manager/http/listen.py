"""`--health HOST:PORT` parsing, in the spelling of Go's net.Listen.

- `127.0.0.1:8765`, `localhost:0`: that host (a name binds every address it resolves to).
- `[::1]:8765`: an IPv6 literal goes in brackets.
- `:8765`: no host means every interface, IPv4 and IPv6, as in Go; it is returned as
  host `""`. Port 0 picks a free port, which `web.server.WebServer.start()` reports.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Tuple

_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$")


def parse_listen(text: str) -> Tuple[str, int]:
    """Split `HOST:PORT` into `(host, port)`; raise ValueError saying what is wrong."""
    value = text.strip()
    if not value:
        raise ValueError("empty address: expected HOST:PORT, e.g. 127.0.0.1:8765 or :0")
    if "://" in value:
        raise ValueError(f"{text!r}: give HOST:PORT without a scheme, e.g. 127.0.0.1:8765")
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            raise ValueError(f"{text!r}: missing ']' after the IPv6 address")
        host, rest = value[1:close], value[close + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']', e.g. [::1]:8765")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} in brackets is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r}: missing ':PORT' (use :0 to pick a free port)")
        if ":" in host:
            raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. [::1]:8765")
        if host and not _HOSTNAME.match(host):
            raise ValueError(f"{text!r}: {host!r} is not a valid host name or address")
    return host, _parse_port(text, port_text)


def _parse_port(text: str, port_text: str) -> int:
    if not port_text:
        raise ValueError(f"{text!r}: missing port after ':' (use :0 to pick a free port)")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"{text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{text!r}: port {port} is out of range 0-65535")
    return port


def format_address(host: str, port: int) -> str:
    """The inverse of parse_listen, for messages: `[::1]:80`, `127.0.0.1:80`, `:80`."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"
