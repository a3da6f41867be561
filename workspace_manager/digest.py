"""SHA-256 (FIPS 180-4) without OpenSSL: what the CLI hashes is a few short strings.

`hashlib` loads OpenSSL's libcrypto when imported (~5 ms), a cost `wsm status` and the other
commands would pay to hash one manager identity or one workspace file. CPython has its own
implementation of SHA-256 in a module of its own (`_sha2` since 3.12, `_sha256` before); the
digests are the same. An interpreter built without it gets hashlib's.
"""

from __future__ import annotations

# typing for the type checkers only (they take any name TYPE_CHECKING as true): `wsm
# status` imports this module, and typing costs ~5 ms of its start
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def sha256(data: bytes = b"") -> Any:
    """A `hashlib.sha256(data)` object (update, digest, hexdigest, copy)."""
    try:
        from _sha2 import sha256 as new  # type: ignore[import-not-found]  # CPython 3.12+
    except ImportError:
        try:
            from _sha256 import sha256 as new  # type: ignore[import-not-found,no-redef]
        except ImportError:  # built with --without-builtin-hashlib-hashes
            from hashlib import sha256 as new
    return new(data)
