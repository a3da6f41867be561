"""Message builders and the strict parser."""

from __future__ import annotations

import pytest

from workspace_manager.protocol import messages
from workspace_manager.protocol.errors import HandshakeError, ProtocolError, RemoteError
from workspace_manager.protocol.messages import Notification, Request, Response, parse


def test_builders_round_trip_through_parse():
    assert parse(messages.request(7, "ping", None)) == Request(7, "ping", {})
    err = messages.error_map("NotFound", "no sensor x")
    assert parse(messages.response(7, err, "ignored")) == Response(7, err, None)
    assert parse(messages.response(8, None, [1])) == Response(8, None, [1])
    assert parse(messages.notification("loaded", {"repositories": ["r"]})) == Notification(
        "loaded", {"repositories": ["r"]}
    )


@pytest.mark.parametrize(
    "obj",
    [
        None,
        0,
        "x",
        {},
        [],
        [3, 1, "m", {}],
        [True, 1, "m", {}],
        ["0", 1, "m", {}],
        [0, 1, "m"],
        [0, 1, "m", {}, 5],
        [0, -1, "m", {}],
        [0, 2**64, "m", {}],
        [0, 1.0, "m", {}],
        [0, True, "m", {}],
        [0, 1, b"m", {}],
        [0, 1, "m", []],
        [0, 1, "m", None],
        [1, 1, "oops", None],
        [1, 1, {"type": "X"}, None],
        [1, 1, {"type": 1, "message": "m"}, None],
        [1, 1, {"type": "X", "message": "m", "traceback": 3}, None],
        [1, 1, None],
        [2, "e"],
        [2, 1, {}],
        [2, "e", []],
    ],
)
def test_parse_rejects_bad_shapes(obj):
    with pytest.raises(ProtocolError):
        parse(obj)


def test_error_from_exception_carries_type_message_and_traceback():
    try:
        _ = 1 / 0
    except ZeroDivisionError as exc:
        err = messages.error_from_exception(exc)
    assert err["type"] == "UserCodeError"
    assert err["message"] == "ZeroDivisionError: division by zero"
    assert "Traceback (most recent call last)" in err["traceback"]
    assert "_ = 1 / 0" in err["traceback"]
    assert messages.error_from_exception(KeyError(), "InternalError")["message"] == "KeyError"


def test_remote_error_from_map():
    exc = RemoteError.from_map({"type": "NotFound", "message": "no repo", "traceback": None})
    assert str(exc) == "NotFound: no repo"
    assert (exc.type, exc.message, exc.traceback) == ("NotFound", "no repo", None)
    hs = RemoteError.from_map({"type": "HandshakeError", "message": "bad secret"})
    assert isinstance(hs, HandshakeError) and str(hs) == "HandshakeError: bad secret"
