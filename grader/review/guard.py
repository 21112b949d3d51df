"""Who may use the review page: requests to its own address only, the token printed with
its URL (then a cookie), and the headers every response carries.
"""
from __future__ import annotations

import hmac
import ipaddress
import re





CSP = ("default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-DNS-Prefetch-Control": "off",  # a link in an answer must not tell its author it was read
}
COOKIE_PREFIX = "grader_review_"
"""+ a digest of the token: two reviews on one machine (cookies ignore ports) keep theirs"""
def _same(given, secret: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), secret.encode())


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::[0-9]{1,5})?")
"""a Host header: a name or an address (IPv6 in brackets), and a port"""


def host_allowed(header: str, names, any_address: bool = False) -> bool:
    """Whether a request's Host `header` names this review: one of `names` (lower case, an
    IPv6 address in brackets) or, with `any_address` (listening on every interface), any IP
    address. Any port (an SSH tunnel may forward another one). What this refuses is the name
    of another site made to point here (DNS rebinding): its pages would be same-origin."""
    match = HOST.fullmatch(header)
    name = match[1] if match else ""
    if name.lower() in names:
        return True
    try:
        return any_address and bool(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return False


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


