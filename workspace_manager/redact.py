"""Credentials out of what wsm prints or stores: ``https://user:secret@host`` becomes
``https://user:****@host`` (pip's own ``redact_auth_from_url`` does the same), and a lone
token in the user part (``https://TOKEN@host``) becomes ``https://****@host``.

Works on any text, so it covers ``--index-url URL``, ``--index-url=URL``, ``-iURL``,
``--extra-index-url``, ``--find-links``, and URLs inside requirements
(``pkg @ https://u:p@host/pkg.whl``, ``git+https://token@github.com/...``).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, List

MASK = "****"

# scheme://userinfo@ ; userinfo has no '/', '@' or whitespace (RFC 3986 section 3.2.1)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")


def _mask(match: re.Match) -> str:
    user, sep, _password = match.group("userinfo").partition(":")
    shown = f"{user}:{MASK}" if sep else MASK
    return f"{match.group('scheme')}{shown}@"


def redact(text: str) -> str:
    """``text`` with the password (or lone token) of every URL in it replaced by ``****``."""
    if "@" not in text:
        return text
    return _USERINFO.sub(_mask, text)


def redact_argv(argv: Iterable[str]) -> List[str]:
    """A command line fit to print or store: each argument passed through `redact`."""
    return [redact(str(arg)) for arg in argv]


def redact_data(value: Any) -> Any:
    """A copy of JSON-like ``value`` (dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v) for v in value]
    return value
