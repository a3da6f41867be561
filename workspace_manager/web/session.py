"""Who may write from a browser: a per-session token on top of the API's Origin check.

The page sets a random session cookie (`wsm_session`: HttpOnly, SameSite=Strict) and renders
`<meta name="wsm-csrf" content=TOKEN>`, where TOKEN is an HMAC of the session id under a
secret of this manager's life; its scripts send it as `X-WSM-CSRF` with every write. A
write that looks like a browser's (it carries that cookie, an Origin or a Sec-Fetch-Site
header) without the token of its own session is refused. Another site's page can neither
read the token (same-origin policy) nor send the cookie (SameSite=Strict), and its Origin
differs: three independent locks (OWASP's "Cross-Site Request Forgery Prevention Cheat
Sheet": the signed double-submit token, plus Origin and Fetch Metadata checks). Programs
(curl, the CLI's HTTP users) send none of these marks and keep the API's own rules.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Mapping, Optional, Tuple

COOKIE = "wsm_session"
HEADER = "x-wsm-csrf"
_SESSION = re.compile(r"^[A-Za-z0-9_-]{32}$")


def new_secret() -> bytes:
    """A fresh key for one manager's life (tokens of an earlier manager stop working)."""
    return secrets.token_bytes(32)


def session_cookie(cookies: Mapping[str, str]) -> Tuple[str, bool]:
    """The request's session id and whether it is new (then set it with `cookie_header`)."""
    current = cookies.get(COOKIE, "")
    if _SESSION.match(current):
        return current, False
    return secrets.token_urlsafe(24), True


def cookie_header(session_id: str) -> str:
    """The `Set-Cookie` value for `session_id`: a browser session cookie for this host."""
    return f"{COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Strict"


def csrf_token(secret: bytes, session_id: str) -> str:
    """The token a page of session `session_id` sends with its writes (64 hex digits)."""
    return hmac.new(secret, session_id.encode("ascii"), hashlib.sha256).hexdigest()


def is_browser(headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
    """Whether a request bears a browser's marks: our cookie, an Origin, Fetch Metadata."""
    return COOKIE in cookies or "origin" in headers or "sec-fetch-site" in headers


def check_browser_write(
    headers: Mapping[str, str], cookies: Mapping[str, str], secret: bytes
) -> Optional[str]:
    """Why a write must be refused (one line), or None. `headers` lower-case names."""
    if not is_browser(headers, cookies):
        return None
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return "a write from another site's page is refused"
    session = cookies.get(COOKIE, "")
    token = headers.get(HEADER, "")
    if not secret or not _SESSION.match(session) or not token:
        return "a write from a browser needs the page's token: reload the page"
    if not hmac.compare_digest(
        token.encode("ascii", "replace"), csrf_token(secret, session).encode()
    ):
        return "the page's token is not this session's: reload the page"
    return None
