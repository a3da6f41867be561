"""Versions in one place: the package version and the wire protocol version the handshake reports."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
