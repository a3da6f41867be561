"""A new run's id."""

from __future__ import annotations

import os


def new_run_id() -> str:
    """A random UUID, version 4, as 32 lowercase hex digits: what `uuid.uuid4().hex` gives
    (RFC 9562 section 5.4: 122 random bits, the version nibble 4, the variant bits 10),
    without importing `uuid`, which imports `platform` (~15 ms of every `wsm job execute`,
    more than its run's own bookkeeping)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()
