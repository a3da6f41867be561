"""The loader's bootstrap: one JSON line on stdin (docs/architecture.md), checked strictly.

A bad bootstrap is a wsm bug, not a repository problem: the loader exits with status 3.
"""

from __future__ import annotations

from collections import namedtuple

from ..protocol.address import parse_address
from ..protocol.framing import DEFAULT_MAX_FRAME
from ..version import PROTOCOL_VERSION
from .jsonline import loads

# typing is for type checkers only: a NamedTuple is a collections.namedtuple at run time
# (docs/architecture.md, "What a location imports").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, NamedTuple, Optional

TARGET_KINDS = ("python_file", "python_module", "python_package")


class BootstrapError(Exception):
    """The bootstrap line is missing or malformed."""


if TYPE_CHECKING:

    class Target(NamedTuple):
        kind: str
        python_file: Optional[str]
        module_name: Optional[str]
        attribute: Optional[str]
        working_directory: Optional[str]

    class Bootstrap(NamedTuple):
        location: str
        listen: str
        secret: str
        status_fd: Optional[int]
        target: Target
        max_frame_bytes: int
        tls: Optional[Dict[str, str]]
        protocol: int
        hello_timeout: float = 10.0
        #: The manager's PYTHONPATH, which the location does not get: named in a load error
        #: caused by a missing module.
        dropped_pythonpath: Optional[str] = None
        cgroup: Optional[str] = None  # the cgroup folder the manager put us in
        #: Where the server loop counts its turns (loader/heartbeat.py): the manager's
        #: heartbeat file, the byte offset of our page, and the most seconds between turns.
        heartbeat: Optional[Heartbeat] = None

    class Heartbeat(NamedTuple):
        path: str
        offset: int
        seconds: float

else:
    Target = namedtuple("Target", "kind python_file module_name attribute working_directory")
    Bootstrap = namedtuple(
        "Bootstrap",
        "location listen secret status_fd target max_frame_bytes tls protocol"
        " hello_timeout dropped_pythonpath cgroup heartbeat",
        defaults=(10.0, None, None, None),
    )
    Heartbeat = namedtuple("Heartbeat", "path offset seconds")


def _get(obj: Dict[str, Any], key: str, kind: Any, *, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise BootstrapError(f"{key!r} is required")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BootstrapError(f"{key!r} has the wrong type ({type(value).__name__})")
    return value


def json_object(line: bytes) -> Dict[str, Any]:
    """The JSON object on a bootstrap line (the loader's and a run's); BootstrapError."""
    if not line.strip():
        raise BootstrapError("no bootstrap line on stdin")
    try:  # UTF-8, what the manager writes; json.loads would also guess UTF-16 and UTF-32
        obj = loads(line.decode("utf-8", "surrogatepass"))
    except ValueError as exc:  # UnicodeDecodeError too
        raise BootstrapError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BootstrapError("not a JSON object")
    return obj


def parse_bootstrap(line: bytes) -> Bootstrap:
    obj = json_object(line)
    location = _get(obj, "location", str)
    listen = _get(obj, "listen", str)
    try:
        parse_address(listen)
    except ValueError as exc:
        raise BootstrapError(f"'listen': {exc}") from None
    secret = _get(obj, "secret", str)
    if not secret:
        raise BootstrapError("'secret' is empty")
    status_fd = _get(obj, "status_fd", int, optional=True)
    if status_fd is not None and status_fd < 0:
        raise BootstrapError("'status_fd' is negative")
    max_frame = _get(obj, "max_frame_bytes", int, optional=True)
    if max_frame is None:
        max_frame = DEFAULT_MAX_FRAME
    if max_frame < 16:
        raise BootstrapError("'max_frame_bytes' is too small")
    tls = _get(obj, "tls", dict, optional=True)
    if tls is not None:
        _get(tls, "cert", str)
        _get(tls, "key", str)
    hello_timeout = _get(obj, "hello_timeout_seconds", (int, float), optional=True)
    if hello_timeout is not None and hello_timeout <= 0:
        raise BootstrapError("'hello_timeout_seconds' must be positive")
    protocol = _get(obj, "protocol", int, optional=True)
    if protocol is not None and protocol != PROTOCOL_VERSION:
        raise BootstrapError(
            f"protocol {protocol} is not supported (loader speaks {PROTOCOL_VERSION})"
        )
    return Bootstrap(
        location=location,
        listen=listen,
        secret=secret,
        status_fd=status_fd,
        target=_parse_target(_get(obj, "target", dict)),
        max_frame_bytes=max_frame,
        tls=tls,
        protocol=PROTOCOL_VERSION,
        hello_timeout=10.0 if hello_timeout is None else float(hello_timeout),
        dropped_pythonpath=_get(obj, "dropped_pythonpath", str, optional=True) or None,
        cgroup=_get(obj, "cgroup", str, optional=True),
        heartbeat=_parse_heartbeat(_get(obj, "heartbeat", dict, optional=True)),
    )


def _parse_heartbeat(obj: Optional[Dict[str, Any]]) -> Optional[Heartbeat]:
    if obj is None:
        return None
    offset = _get(obj, "offset", int)
    seconds = _get(obj, "seconds", (int, float))
    if offset < 0 or seconds <= 0:
        raise BootstrapError("'heartbeat' needs a non-negative offset and positive seconds")
    return Heartbeat(path=_get(obj, "path", str), offset=offset, seconds=float(seconds))


def _parse_target(obj: Dict[str, Any]) -> Target:
    kind = _get(obj, "kind", str)
    if kind not in TARGET_KINDS:
        raise BootstrapError(f"target kind {kind!r} is not one of {', '.join(TARGET_KINDS)}")
    python_file = _get(obj, "python_file", str, optional=True)
    module_name = _get(obj, "module_name", str, optional=True)
    if kind == "python_file" and not python_file:
        raise BootstrapError("a python_file target needs 'python_file'")
    if kind != "python_file" and not module_name:
        raise BootstrapError(f"a {kind} target needs 'module_name'")
    return Target(
        kind=kind,
        python_file=python_file,
        module_name=module_name,
        attribute=_get(obj, "attribute", str, optional=True),
        working_directory=_get(obj, "working_directory", str, optional=True),
    )
