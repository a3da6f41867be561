"""supervisor/lines.py: a child's output as lines, long ones in pieces at UTF-8 boundaries,
nothing lost whatever the reads' sizes."""

from __future__ import annotations

from typing import List

from hypothesis import given
from hypothesis import strategies as st

from workspace_manager.supervisor.lines import LineSplitter


def split(chunks: List[bytes], limit: int) -> List[bytes]:
    lines = LineSplitter(limit)
    out: List[bytes] = []
    for chunk in chunks:
        out.extend(lines.feed(chunk))
    return out + lines.end()


def test_a_long_line_comes_whole_in_pieces_cut_between_characters() -> None:
    text = ("é" * 10 + "x") * 3  # 21 bytes a group: cuts would fall inside an "é"
    pieces = split([text.encode() + b"\nnext\n"], limit=8)
    assert b"".join(pieces[:-1]).decode() == text
    assert all(len(p) <= 8 for p in pieces)
    assert [p.decode() for p in pieces[:-1]]  # every piece decodes on its own
    assert pieces[-1] == b"next"


@given(
    st.lists(st.text(max_size=40), max_size=8),
    st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=20),
    st.integers(min_value=4, max_value=16),
)
def test_nothing_is_lost_whatever_the_reads(lines: List[str], sizes: List[int], limit: int) -> None:
    data = b"".join(line.replace("\n", " ").encode() + b"\n" for line in lines)
    chunks, at, i = [], 0, 0
    while at < len(data):
        chunks.append(data[at : at + sizes[i % len(sizes)]])
        at += sizes[i % len(sizes)]
        i += 1
    pieces = split(chunks, limit)
    assert all(len(p) <= limit for p in pieces)
    assert b"".join(pieces) == data.replace(b"\n", b"")
    for piece in pieces:
        piece.decode()  # cut at character boundaries only
