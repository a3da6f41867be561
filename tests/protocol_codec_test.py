"""The pure codec against C msgpack: identical bytes, mutual decoding, strict rejection."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workspace_manager.loader.launch import make_sdk_dir
from workspace_manager.protocol import codec, purepack
from workspace_manager.protocol.codec import DecodeError

ints = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from(
        [
            0,
            127,
            128,
            255,
            256,
            65535,
            65536,
            2**32 - 1,
            2**32,
            2**64 - 1,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            -(2**31),
            -(2**31) - 1,
            -(2**63),
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(allow_nan=False),
    st.text(),
    st.text(min_size=30, max_size=300),
    st.binary(),
    st.binary(min_size=250, max_size=300),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=20),
        st.dictionaries(st.one_of(st.text(), ints), children, max_size=20),
    ),
    max_leaves=60,
)


def c_packb(obj):
    return msgpack.packb(obj, use_bin_type=True)


def c_unpackb(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


@settings(max_examples=300, deadline=None)
@given(values)
def test_backends_produce_identical_bytes_and_decode_each_other(value):
    data = c_packb(value)
    assert purepack.packb(value) == data
    assert purepack.unpackb(data) == value
    assert c_unpackb(purepack.packb(value)) == value
    assert codec.unpackb(codec.packb(value)) == value
    assert codec.unpackb_in_slices(data) == value
    assert codec.packb_in_slices(value) == data


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_keep_their_bits(x):
    data = purepack.packb(x)
    assert data == c_packb(x)
    y = purepack.unpackb(data)
    assert (math.isnan(x) and math.isnan(y)) or y == x


@given(st.floats(width=32, allow_nan=False))
def test_float32_decodes(x):
    data = msgpack.packb(x, use_single_float=True)
    assert data[0] == 0xCA
    assert purepack.unpackb(data) == x


@pytest.mark.parametrize(
    "value",
    [
        [1] * 16,
        [1] * 65536,
        {str(i): i for i in range(16)},
        {str(i): i for i in range(65536)},
        "x" * 31,
        "x" * 32,
        "x" * 256,
        "x" * 65536,
        b"",
        b"x" * 65536,
        (1, 2),
    ],
)
def test_size_class_boundaries(value):
    data = purepack.packb(value)
    assert data == c_packb(value)
    expected = list(value) if isinstance(value, tuple) else value
    assert purepack.unpackb(data) == expected


def test_tuples_and_subclasses_encode_as_their_base_type():
    class S(str):
        pass

    class Int(int):
        pass

    value = {S("a"): Int(300), "t": (1, 2), "b": bytearray(b"xy"), "f": True}
    assert purepack.packb(value) == c_packb(value)


def test_encoder_refuses_what_msgpack_refuses():
    for bad in [2**64, -(2**63) - 1]:
        with pytest.raises(OverflowError):
            purepack.packb(bad)
    with pytest.raises(TypeError):
        purepack.packb({1, 2})
    with pytest.raises(TypeError):
        purepack.packb(object())


def nested(depth):
    value = None
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_limit():
    ok = c_packb(nested(purepack.MAX_DEPTH))
    assert purepack.unpackb(ok) == nested(purepack.MAX_DEPTH)
    with pytest.raises(purepack.PurepackError, match="nesting"):
        purepack.unpackb(b"\x91" * (purepack.MAX_DEPTH + 1) + b"\xc0")
    with pytest.raises(purepack.PurepackError):
        purepack.unpackb(b"\x81\xa1k" * (purepack.MAX_DEPTH + 1) + b"\xc0")
    with pytest.raises(ValueError):
        purepack.packb(nested(purepack.MAX_DEPTH + 1))
    for decode in (purepack.unpackb, codec.unpackb, codec.unpackb_in_slices):
        with pytest.raises(ValueError):
            decode(b"\x91" * 100_000 + b"\xc0")


MALFORMED = [
    b"",  # nothing
    b"\xc1",  # never-used type byte
    b"\xd4\x01\x00",  # fixext 1
    b"\xd6\xff\x00\x00\x00\x01",  # timestamp 32
    b"\xd7\xff" + b"\x00" * 8,  # timestamp 64
    b"\xc7\x0c\xff" + b"\x00" * 12,  # timestamp 96
    b"\xc8\x00\x0c\xff" + b"\x00" * 12,  # timestamp in ext16
    b"\x92\x01",  # truncated array
    b"\x82\xa1a\x01",  # truncated map
    b"\xdd\xff\xff\xff\xff",  # array32 claiming 4G elements
    b"\xdf\xff\xff\xff\xff\x01",  # map32 claiming 4G entries
    b"\xdb\xff\xff\xff\xff",  # str32 claiming 4 GiB
    b"\xc6\x00\x00\x00\x05abc",  # truncated bin32
    b"\xcd\x01",  # truncated uint16
    b"\xcb\x00\x00",  # truncated float64
    b"\x01\x02",  # trailing bytes
    b"\xa1\xff",  # invalid UTF-8
    b"\x81\x90\x00",  # array as map key
    b"\x81\x80\x00",  # map as map key
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_input_raises_decode_error(data):
    with pytest.raises(purepack.PurepackError):
        purepack.unpackb(data)
    with pytest.raises(DecodeError):
        codec.unpackb(data)
    with pytest.raises(DecodeError):
        codec.unpackb_in_slices(data)
    # inside a value large enough to be decoded in several slices
    with pytest.raises(DecodeError):
        codec.unpackb_in_slices(b"\x92" + c_packb("x" * 200_000) + data)
    assert issubclass(DecodeError, ValueError)


LARGE = [
    list(range(70_000)),  # array32
    {i: [None] * 5_000 for i in range(3)},  # a map of sliced arrays
    {str(i): i for i in range(70_000)},  # map32
    [list(range(4_100)), {"a": list(range(4_200))}, "x"] * 1_400,  # slices with large items
    [{"k": list(range(4_100))} for _ in range(10)],
    [[]] * 4_097,
]


@pytest.mark.parametrize("value", LARGE, ids=range(len(LARGE)))
def test_large_values_encode_and_decode_in_slices_to_the_same_bytes(value):
    data = c_packb(value)
    assert codec.packb_in_slices(value) == data
    assert codec.unpackb_in_slices(data) == value


def test_timestamp_bytes_inside_a_string_still_decode():
    value = ["\u00ff", b"\xd6\xff\x00\x00\x00\x01"]
    assert codec.unpackb(codec.packb(value)) == value
    assert codec.unpackb_in_slices(codec.packb(value)) == value


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_raise_anything_but_decode_error(data):
    for decode in (purepack.unpackb, codec.unpackb, codec.unpackb_in_slices):
        try:
            decode(data)
        except ValueError:
            pass


def test_backend_selection_and_override():
    assert codec.BACKEND == "msgpack"  # the test interpreter has msgpack
    code = "from workspace_manager.protocol import codec; print(codec.BACKEND)"
    env = dict(os.environ, WSM_PURE_MSGPACK="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "pure"


def test_debian_python_without_msgpack_uses_pure_backend(tmp_path):
    python = "/usr/bin/python3"
    if not os.path.exists(python):
        pytest.skip("no /usr/bin/python3")
    # The package reaches the interpreter as the loader's does: through an SDK folder holding
    # only a link to it. (The package's parent folder is site-packages when wsm is installed,
    # and would bring wsm's own msgpack along.)
    sdk = make_sdk_dir(str(tmp_path))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from workspace_manager.protocol import codec;"
        "v = {'a': [1, -200, 2**40, 1.5, 'x' * 40, b'y', None, True]};"
        "assert codec.unpackb(codec.packb(v)) == v; print(codec.BACKEND)"
    )
    out = subprocess.run([python, "-c", code, sdk], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pure"


LAZY_PROBE = """
import sys
from workspace_manager.protocol import codec
small = [0, 1, "status", {"a": "b"}]
for _ in range(int(sys.argv[1])):
    assert codec.unpackb(codec.packb(small)) == small
before = "msgpack" in sys.modules
big = {"x": "y" * codec.LAZY_BYTES}
assert codec.unpackb(codec.packb(big)) == big
print(before, "msgpack" in sys.modules, codec.BACKEND)
"""


@pytest.mark.parametrize(
    "calls, loaded_before",
    [(1, False), (codec.LAZY_CALLS // 2 - 1, False), (codec.LAZY_CALLS // 2 + 1, True)],
)
def test_c_msgpack_is_imported_at_the_first_large_payload_or_after_many_calls(
    calls: int, loaded_before: bool
) -> None:
    """A short command's few small frames skip C msgpack's import (~5 ms); a large payload
    (in either direction) or a long-lived process's traffic imports it; the bytes are the same
    (test_backends_produce_identical_bytes_and_decode_each_other)."""
    out = subprocess.run(
        [sys.executable, "-c", LAZY_PROBE, str(calls)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    # each round trip is two calls: a packb and an unpackb
    assert out.stdout.split() == [str(loaded_before), "True", "msgpack"]
