"""Webhooks on the wire: which URLs parkweb will call, how a delivery is signed, and the
one HTTP request it makes. No database here (lots.services.webhooks keeps the log).

A tenant's URL is an attack on the machine parkweb runs on until shown otherwise (server-
side request forgery): only `https` (plain `http` to a loopback address only when
`DEBUG`), no user or password in it, and the host must resolve to public addresses only,
unless staff allow private ones for that endpoint. The address is checked when the request
is made, and the connection goes to exactly the address checked (a name that resolves
differently the second time gains nothing). Redirects are never followed, time is short,
and only a short prefix of the answer is read.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

EVENT_TYPES = (
    "call.parked",
    "call.retrieved",
    "call.timed_out",
    "call.abandoned",
    "call.lost",
    "call.waiting_long",
    "lot.full",
    "lot.available",
    "deployment.finished",
    "test",
)
# The board's frame kinds (lots.frames) -> the event types they are.
CALL_EVENTS = {
    "parked": "call.parked",
    "unparked": "call.retrieved",
    "timed_out": "call.timed_out",
    "abandoned": "call.abandoned",
    "lost": "call.lost",
}
SIGNATURE_HEADER = "X-Parkweb-Signature"
TIMESTAMP_HEADER = "X-Parkweb-Timestamp"
EVENT_HEADER = "X-Parkweb-Event"
ID_HEADER = "X-Parkweb-Event-Id"
RESPONSE_PREFIX = 200  # bytes of an answer kept in the delivery log
USER_AGENT = "parkweb-webhooks/1"


class Refused(ValueError):
    """A URL or address parkweb will not call; the message says why, for people."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


def parse_url(url: str, *, debug: bool) -> Target:
    """The parts of a URL parkweb may call; Refused with the reason otherwise."""
    if not isinstance(url, str) or len(url) > 500 or not url.isascii() or not url.isprintable():
        raise Refused("Give an https URL of at most 500 plain characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Refused("Give an https URL, like https://crm.example.com/parking.")
    if parts.username is not None or parts.password is not None:
        raise Refused(
            "Leave user names and passwords out of the URL: the signature proves it is parkweb."
        )
    if parts.fragment:
        raise Refused("Leave out the #fragment.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("The port must be a number from 1 to 65535.") from None
    if parts.scheme == "http" and not (debug and _is_loopback_name(parts.hostname)):
        raise Refused("Only https URLs are allowed (plain http only to this machine, when DEBUG).")
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return Target(parts.scheme, parts.hostname, port, path)


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(address: str, *, allow_private: bool, debug_loopback: bool) -> None:
    """Refused unless the address is one parkweb may connect to."""
    ip = ipaddress.ip_address(address)
    if ip.is_loopback and debug_loopback:
        return
    # Never: link-local (cloud metadata lives there), unspecified, multicast, reserved.
    special = ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip.is_reserved
    never = special and not ip.is_loopback  # ::1 counts as reserved too
    if ip.is_global and not never:
        return
    if allow_private and (ip.is_private or ip.is_loopback) and not never:
        return
    raise Refused(f"{address} is not a public address: parkweb does not call it.")


def check_literal(target: Target, *, debug: bool) -> None:
    """A URL whose host is an address is checked when it is saved (a name is checked at
    each delivery, where it resolves); private addresses are for staff to allow."""
    try:
        ipaddress.ip_address(target.host)
    except ValueError:
        return
    check_address(
        target.host, allow_private=False, debug_loopback=debug and target.scheme == "http"
    )


def resolve(target: Target, *, allow_private: bool, debug: bool) -> str:
    """The one address parkweb connects to: every address the host has must be allowed
    (so no answer of the resolver can point parkweb inside), and the first is used."""
    try:
        found = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Refused(f"{target.host} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in found))
    debug_loopback = debug and target.scheme == "http"
    for address in addresses:
        check_address(address, allow_private=allow_private, debug_loopback=debug_loopback)
    if not addresses:
        raise Refused(f"{target.host} has no address.")
    return addresses[0]


def body_of(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` and HMAC-SHA256, keyed with the endpoint's secret, of `<timestamp>.<body>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


@dataclass(frozen=True)
class Answer:
    code: int | None  # HTTP status; None when there was none
    seconds: float
    prefix: str  # the first bytes of the body, as text
    error: str = ""  # why it did not count as delivered

    @property
    def delivered(self) -> bool:
        return not self.error


class _Pinned:
    """http.client connections to exactly one checked address, TLS verified against the
    URL's host name."""

    class HTTP(http.client.HTTPConnection):
        def __init__(self, host, port, address, timeout):
            super().__init__(host, port, timeout=timeout)
            self.address = address

        def connect(self):
            self.sock = socket.create_connection((self.address, self.port), self.timeout)

    class HTTPS(http.client.HTTPSConnection):
        def __init__(self, host, port, address, timeout, context):
            super().__init__(host, port, timeout=timeout, context=context)
            self.address = address

        def connect(self):
            sock = socket.create_connection((self.address, self.port), self.timeout)
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def send(
    url: str,
    event: dict,
    secret: str,
    *,
    allow_private: bool,
    debug: bool,
    timeout: float,
    ca_file: str | None = None,
) -> Answer:
    """POST one event, signed. Never raises: a refused URL, a network error, a timeout,
    a redirect or a non-2xx answer comes back as an Answer with `error`."""
    started = time.perf_counter()

    def failed(error: str, code: int | None = None, prefix: str = "") -> Answer:
        return Answer(code, time.perf_counter() - started, prefix, error[:300])

    try:
        target = parse_url(url, debug=debug)
        address = resolve(target, allow_private=allow_private, debug=debug)
    except Refused as exc:
        return failed(str(exc))
    body = body_of(event)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: str(event.get("type", "")),
        ID_HEADER: str(event.get("id", "")),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    if target.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        connection = _Pinned.HTTPS(target.host, target.port, address, timeout, context)
    else:
        connection = _Pinned.HTTP(target.host, target.port, address, timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        prefix = response.read(RESPONSE_PREFIX).decode("utf-8", "replace")
        code = response.status
    except (OSError, http.client.HTTPException) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else str(exc)
        return failed(f"no answer: {reason or type(exc).__name__}")
    finally:
        connection.close()
    prefix = "".join(c if c.isprintable() else " " for c in prefix)
    if 300 <= code < 400:
        return failed(f"answered {code}: redirects are not followed", code, prefix)
    if not 200 <= code < 300:
        return failed(f"answered {code}", code, prefix)
    return Answer(code, time.perf_counter() - started, prefix)
