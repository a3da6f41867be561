"""Framing: incremental decoding, early refusal of bad lengths, the blocking read helper."""

from __future__ import annotations

import io
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workspace_manager.protocol import framing
from workspace_manager.protocol.framing import (
    HEADER,
    FrameDecoder,
    FrameError,
    encode_frame,
    read_frame,
)


def test_encode_frame_is_length_then_msgpack():
    frame = encode_frame([0, 1, "ping", {}])
    (length,) = HEADER.unpack(frame[:4])
    assert length == len(frame) - 4 == 9
    assert frame[4:] == b"\x94\x00\x01\xa4ping\x80"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 2**64 - 1), st.text(), st.binary()), max_size=8),
    st.data(),
)
def test_frames_decode_whatever_the_chunking(objects, data):
    stream = b"".join(encode_frame(o) for o in objects)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder()
    out = []
    prev = 0
    for cut in cuts + [len(stream)]:
        out += decoder.feed(stream[prev:cut])
        prev = cut
    assert out == objects
    assert not decoder.has_partial


def test_has_partial_after_a_header_or_part_of_one():
    frame = encode_frame("hello")
    for n in range(1, len(frame)):
        decoder = FrameDecoder()
        assert decoder.feed(frame[:n]) == []
        assert decoder.has_partial
        assert decoder.feed(frame[n:]) == ["hello"]
        assert not decoder.has_partial


def test_oversized_length_refused_from_the_header_alone():
    decoder = FrameDecoder(max_frame=100)
    with pytest.raises(FrameError, match="exceeds"):
        decoder.feed(HEADER.pack(101))  # no body at all: refused before buffering it
    with pytest.raises(FrameError, match="exceeds"):
        FrameDecoder().feed(b"\xff\xff\xff\xff")


def test_zero_length_refused():
    with pytest.raises(FrameError, match="zero"):
        FrameDecoder().feed(HEADER.pack(0))


def test_undecodable_payload_refused_and_earlier_frames_kept():
    decoder = FrameDecoder()
    with pytest.raises(FrameError, match="undecodable") as info:
        decoder.feed(encode_frame(1) + HEADER.pack(1) + b"\xc1")
    assert info.value.objects == [1]
    with pytest.raises(FrameError):
        decoder.feed(HEADER.pack(2) + b"\x01\x02")  # trailing bytes inside the frame


def test_read_frame_from_file_and_recv():
    stream = encode_frame({"a": 1}) + encode_frame(None)
    f = io.BytesIO(stream)
    assert read_frame(f) == {"a": 1}
    assert read_frame(f) is None
    assert read_frame(f) is framing.EOF
    a, b = socket.socketpair()
    with a, b:
        a.sendall(encode_frame([1, 2]))
        a.shutdown(socket.SHUT_WR)
        assert read_frame(b.recv) == [1, 2]
        assert read_frame(b.recv) is framing.EOF


def test_read_frame_errors():
    with pytest.raises(FrameError, match="truncated"):
        read_frame(io.BytesIO(encode_frame("abc")[:-1]))
    with pytest.raises(FrameError, match="truncated"):
        read_frame(io.BytesIO(b"\x00\x00"))
    with pytest.raises(FrameError, match="exceeds"):
        read_frame(io.BytesIO(HEADER.pack(11)), max_frame=10)
    with pytest.raises(FrameError, match="undecodable"):
        read_frame(io.BytesIO(HEADER.pack(1) + b"\xc1"))
