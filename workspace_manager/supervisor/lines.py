"""A child's output (a pipe's bytes) as lines, for the logs of loaders and runs.

A line longer than `MAX_LINE` bytes (supervisor/plan.py) is kept whole, in pieces of at most
that many bytes, each cut at a UTF-8 character boundary: nothing a job prints is lost, and
binary garbage with no newline costs bounded memory (one piece at a time).
"""

from __future__ import annotations

from typing import List

from workspace_manager.supervisor.plan import MAX_LINE


class LineSplitter:
    """Feed it what a pipe gives; it returns the complete lines (without their `\\n`),
    long ones in pieces. `end()` returns what is left after EOF."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self._buf = b""

    def feed(self, chunk: bytes) -> List[bytes]:
        """The lines (and pieces of long ones) completed by `chunk`."""
        out: List[bytes] = []
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        for line in lines:
            out.extend(self._pieces(line, whole=True))
        if len(self._buf) > self.limit:
            *full, self._buf = self._pieces(self._buf, whole=False)
            out.extend(full)
        return out

    def end(self) -> List[bytes]:
        """What is left once the pipe is closed (a last line with no newline)."""
        rest, self._buf = self._buf, b""
        return self._pieces(rest, whole=True) if rest else []

    def _pieces(self, line: bytes, whole: bool) -> List[bytes]:
        """`line` in pieces of at most `limit` bytes; with `whole` False the last piece is
        what is still open (it may be short)."""
        pieces: List[bytes] = []
        while len(line) > self.limit:
            cut = _boundary(line, self.limit)
            pieces.append(line[:cut])
            line = line[cut:]
        if whole or line:
            pieces.append(line)
        return pieces


def text_pieces(text: str, limit: int = MAX_LINE) -> List[str]:
    """One line of text as the pieces LineSplitter would make of its UTF-8 bytes."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= limit:
        return [text]
    return [p.decode("utf-8", "replace") for p in LineSplitter(limit)._pieces(data, whole=True)]


def _boundary(data: bytes, limit: int) -> int:
    """The largest cut <= `limit` not inside a UTF-8 sequence (continuation bytes are
    0b10xxxxxx, RFC 3629); at most 3 bytes back, else `limit` (not UTF-8 anyway)."""
    for cut in range(limit, max(limit - 3, 1) - 1, -1):
        if data[cut] & 0xC0 != 0x80:
            return cut
    return limit
