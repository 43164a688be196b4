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
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

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


def _connected(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to exactly this address, without Nagle's delay (a request goes
    out in one write; a kept connection must not wait on the last one's ACK)."""
    sock = socket.create_connection((address, port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _Pinned:
    """http.client connections to exactly one checked address, TLS verified against the
    URL's host name."""

    class HTTP(http.client.HTTPConnection):
        def __init__(self, host, port, address, timeout):
            super().__init__(host, port, timeout=timeout)
            self.address = address

        def connect(self):
            self.sock = _connected(self.address, self.port, self.timeout)

    class HTTPS(http.client.HTTPSConnection):
        def __init__(self, host, port, address, timeout, context):
            super().__init__(host, port, timeout=timeout, context=context)
            self.address = address

        def connect(self):
            sock = _connected(self.address, self.port, self.timeout)
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


# An answer's body beyond the prefix is read (and dropped) up to this many bytes so that
# its connection can carry the next delivery; a longer one closes the connection.
DRAIN_BYTES = 16 * 1024
# Why a reused connection failed before any answer came: the receiver closed it while it
# sat idle. The delivery is sent again at once on a new connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class _Route:
    """What a kept connection was opened for: another route needs another connection."""

    target: Target
    allow_private: bool
    debug: bool
    ca_file: str | None
    timeout: float


@dataclass
class _Kept:
    connection: http.client.HTTPConnection
    route: _Route
    opened: float  # time.monotonic()
    used: float


class Sender:
    """Sends deliveries, keeping one connection per endpoint open between them (HTTP
    keep-alive): a busy endpoint costs no connect, and no TLS handshake, per event.

    A kept connection goes to the address that was checked when it was opened; it is
    closed, and the host resolved and checked again, once it is `max_age` seconds old or
    has been idle `max_idle` seconds, or when the endpoint's URL or rules change. Safe to
    use from several threads as long as one endpoint is sent to by one thread at a time
    (the delivery runs make sure of that)."""

    def __init__(self, *, max_age: float = 60.0, max_idle: float = 15.0):
        self.max_age, self.max_idle = max_age, max_idle
        self._kept: dict[object, _Kept] = {}
        self._lock = threading.Lock()
        self._contexts: dict[str | None, ssl.SSLContext] = {}

    def send(
        self,
        endpoint: object,
        url: str,
        event: dict,
        secret: str,
        *,
        allow_private: bool,
        debug: bool,
        timeout: float,
        ca_file: str | None = None,
    ) -> Answer:
        """POST one event, signed. Never raises: a refused URL, a network error, a
        timeout, a redirect or a non-2xx answer comes back as an Answer with `error`."""
        started = time.perf_counter()

        def failed(error: str, code: int | None = None, prefix: str = "") -> Answer:
            return Answer(code, time.perf_counter() - started, prefix, error[:300])

        try:
            target = parse_url(url, debug=debug)
        except Refused as exc:
            return failed(str(exc))
        route = _Route(target, allow_private, debug, ca_file, timeout)
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
        kept = self._take(endpoint, route)
        while True:
            reused = kept is not None
            if kept is None:
                try:
                    kept = self._open(route)
                except Refused as exc:
                    return failed(str(exc))
            connection = kept.connection
            try:
                connection.request("POST", target.path, body=body, headers=headers)
                response = connection.getresponse()
                prefix = response.read(RESPONSE_PREFIX).decode("utf-8", "replace")
                code = response.status
                if not response.isclosed():
                    response.read(DRAIN_BYTES)
                keep = response.isclosed() and not response.will_close
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if reused and isinstance(exc, _STALE):
                    kept = None  # closed by the receiver while idle: once more, afresh
                    log.debug("webhook %s: kept connection gone (%s)", endpoint, exc)
                    continue
                reason = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else str(exc)
                return failed(f"no answer: {reason or type(exc).__name__}")
            break
        if keep:
            kept.used = time.monotonic()
            self._put(endpoint, kept)
        else:
            connection.close()
        prefix = "".join(c if c.isprintable() else " " for c in prefix)
        if 300 <= code < 400:
            return failed(f"answered {code}: redirects are not followed", code, prefix)
        if not 200 <= code < 300:
            return failed(f"answered {code}", code, prefix)
        return Answer(code, time.perf_counter() - started, prefix)

    def _open(self, route: _Route) -> _Kept:
        """A new connection object to the one address the host may be reached at (it
        connects on its first request)."""
        target = route.target
        address = resolve(target, allow_private=route.allow_private, debug=route.debug)
        if target.scheme == "https":
            context = self._context(route.ca_file)
            connection = _Pinned.HTTPS(target.host, target.port, address, route.timeout, context)
        else:
            connection = _Pinned.HTTP(target.host, target.port, address, route.timeout)
        now = time.monotonic()
        return _Kept(connection, route, now, now)

    def _context(self, ca_file: str | None) -> ssl.SSLContext:
        """One TLS context per CA file (loading the system's CAs costs milliseconds)."""
        with self._lock:
            if ca_file not in self._contexts:
                self._contexts[ca_file] = ssl.create_default_context(cafile=ca_file)
            return self._contexts[ca_file]

    def _take(self, endpoint: object, route: _Route) -> _Kept | None:
        with self._lock:
            kept = self._kept.pop(endpoint, None)
        if kept is None:
            return None
        now = time.monotonic()
        stale = now - kept.opened > self.max_age or now - kept.used > self.max_idle
        if stale or kept.route != route:
            kept.connection.close()
            return None
        return kept

    def _put(self, endpoint: object, kept: _Kept) -> None:
        with self._lock:
            old = self._kept.pop(endpoint, None)
            self._kept[endpoint] = kept
        if old is not None:
            old.connection.close()

    def close_idle(self) -> int:
        """Close the connections idle longer than `max_idle`; returns how many."""
        now = time.monotonic()
        with self._lock:
            stale = [e for e, k in self._kept.items() if now - k.used > self.max_idle]
            gone = [self._kept.pop(e) for e in stale]
        for kept in gone:
            kept.connection.close()
        return len(gone)

    def close(self) -> None:
        with self._lock:
            gone, self._kept = list(self._kept.values()), {}
        for kept in gone:
            kept.connection.close()


def send(url: str, event: dict, secret: str, **options) -> Answer:
    """POST one event on a connection of its own, closed afterwards (the options of
    Sender.send)."""
    sender = Sender()
    try:
        return sender.send(None, url, event, secret, **options)
    finally:
        sender.close()
