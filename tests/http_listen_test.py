from __future__ import annotations

import pytest

from workspace_manager.http.listen import format_address, parse_listen


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:8765", ("127.0.0.1", 8765)),
        ("localhost:0", ("localhost", 0)),
        (":0", ("", 0)),
        (":8765", ("", 8765)),
        ("[::1]:80", ("::1", 80)),
        ("[::]:0", ("::", 0)),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("health.internal:9000", ("health.internal", 9000)),
        ("  127.0.0.1:1  ", ("127.0.0.1", 1)),
    ],
)
def test_parse_listen(text: str, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty address"),
        ("8765", "missing ':PORT'"),
        ("localhost", "missing ':PORT'"),
        ("127.0.0.1:", "missing port"),
        ("127.0.0.1:http", "is not a number"),
        ("127.0.0.1:-1", "is not a number"),
        ("127.0.0.1:+80", "is not a number"),
        ("127.0.0.1:65536", "out of range"),
        ("::1:80", "in brackets"),
        ("[::1:80", "missing ']'"),
        ("[::1]80", "expected ':PORT'"),
        ("[::1]", "expected ':PORT'"),
        ("[localhost]:80", "not an IPv6 address"),
        ("bad host:80", "not a valid host"),
        ("tcp://127.0.0.1:80", "without a scheme"),
    ],
)
def test_parse_listen_errors_say_what_is_wrong(text: str, message: str):
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        parse_listen(text)


@pytest.mark.parametrize("text", ["127.0.0.1:8765", "[::1]:80", ":0", "localhost:0"])
def test_format_address_round_trips(text: str):
    assert format_address(*parse_listen(text)) == text
