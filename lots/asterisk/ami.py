"""The one AMI client: the only module that imports panoramisk.

- connects and logs in with timeouts, and tells a refused connection, a failed login and a
  timeout apart;
- sends only allow-listed actions, every header value checked first (AMI takes a bare LF
  as a line end, so a CR or LF inside a value would inject headers or whole actions);
- returns typed results;
- watches the connection: Ping with a timeout, and on silence closes the transport so the
  connection is rebuilt (panoramisk's own pings never check the answer).

Create clients inside a running event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from panoramisk import Manager
from panoramisk.message import Message

log = logging.getLogger(__name__)

# Actions parkweb sends, and nothing else. Each needs the AMI user's rights noted in the
# README ("Pointing parkweb at your Asterisk").
ALLOWED_ACTIONS = frozenset(
    {
        "Login",
        "Logoff",
        "Ping",
        "Reload",
        "Parkinglots",
        "ParkedCalls",
        "Command",
        "Originate",
        "Hangup",
        "Park",
        "GetConfig",
        "UpdateConfig",
        "ShowDialPlan",
        "CoreSettings",
        "DialplanExtensionAdd",
        "DialplanExtensionRemove",
    }
)
# CLI commands parkweb may run through Action: Command: read-only ones, nothing else.
ALLOWED_COMMANDS = re.compile(
    r"(parking show( [a-z0-9_-]{1,80})?|features show|core show version"
    r"|dialplan show [A-Za-z0-9_-]{1,63})"
)
MAX_VALUE_LENGTH = 1024


class AmiError(Exception):
    """Base of every AMI failure."""


class AmiConnectError(AmiError):
    """The TCP connection was refused or failed."""


class AmiAuthError(AmiError):
    """Asterisk refused the username or secret."""


class AmiTimeout(AmiError):
    """Asterisk did not answer in time."""


class AmiRefused(AmiError):
    """An action or value parkweb will not send."""


class AmiActionError(AmiError):
    """Asterisk answered an action with an error."""

    def __init__(self, action: str, message: str):
        super().__init__(f"{action}: {message}")
        self.action = action
        self.message = message


@dataclass(frozen=True)
class AmiResponse:
    success: bool
    message: str
    headers: dict[str, str | list[str]] = field(default_factory=dict)
    events: tuple[dict[str, str | list[str]], ...] = ()


@dataclass(frozen=True)
class Parkinglot:
    """One lot as `Action: Parkinglots` reports it."""

    name: str
    start_space: int
    stop_space: int
    timeout: int


def check_value(name: str, value: object) -> str:
    """The header value as text, or AmiRefused if it could inject into the stream."""
    text = str(value)
    if any(char in text for char in "\r\n\0"):
        raise AmiRefused(f"AMI header {name} must not contain line breaks")
    if len(text) > MAX_VALUE_LENGTH:
        raise AmiRefused(f"AMI header {name} is longer than {MAX_VALUE_LENGTH} characters")
    if name and (":" in name or not name.replace("-", "").isalnum()):
        raise AmiRefused(f"AMI header name {name!r} is not allowed")
    return text


def _headers(message: Message) -> dict[str, str | list[str]]:
    return {key: value for key, value in message.items()}


class _Manager(Manager):
    """panoramisk's Manager, reconnecting only when asked to and never once closed."""

    reconnect = False
    closing = False
    attempts = 0

    def connect(self, *args, **kwargs):
        if self.closing or (self.attempts and not self.reconnect):
            return None
        self.attempts += 1
        return super().connect(*args, **kwargs)


class AmiClient:
    """One AMI connection. Use as `async with AmiClient(...) as ami:`."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        events: str = "off",
        timeout: float = 5.0,
        reload_timeout: float = 300.0,
        reconnect: bool = False,
        on_disconnect: Callable[[], object] | None = None,
    ):
        for name, value in (("Host", host), ("Username", username), ("Secret", secret)):
            check_value(name, value)
        self.host, self.port = host, int(port)
        self.username, self._secret = username, secret
        self.events = events
        self.timeout = timeout
        # A reload of a big res_parking.conf legitimately takes long (minutes at 10,000 lots).
        self.reload_timeout = reload_timeout
        self.reconnect = reconnect
        self._on_disconnect = on_disconnect
        self._manager: _Manager | None = None
        self._watchdog: asyncio.Task | None = None

    def __repr__(self) -> str:  # never shows the secret
        return f"<AmiClient {self.username}@{self.host}:{self.port}>"

    async def __aenter__(self) -> AmiClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect and log in, or raise AmiConnectError, AmiAuthError or AmiTimeout."""
        manager = _Manager(
            loop=asyncio.get_running_loop(),
            host=self.host,
            port=self.port,
            username=self.username,
            secret=self._secret,
            events=self.events,
            # Our watchdog does the pinging; panoramisk's would never notice a silence.
            ping_delay=10**6,
            ping_interval=10**6,
            log=log,
            on_disconnect=self._disconnected,
        )
        manager.reconnect = self.reconnect
        self._manager = manager
        try:
            await asyncio.wait_for(manager.connect(), self.timeout)
        except TimeoutError:
            await self.close()
            raise AmiTimeout(
                f"no TCP connection to {self.host}:{self.port} within {self.timeout}s"
            ) from None
        except (OSError, UnicodeError, ValueError) as exc:  # refused, unreachable, bad name
            await self.close()
            reason = getattr(exc, "strerror", None) or exc
            raise AmiConnectError(f"cannot connect to {self.host}:{self.port}: {reason}") from None
        if manager.authenticated_future is None:  # connection_made runs as a task callback
            await asyncio.sleep(0)
        try:
            reply = await asyncio.wait_for(
                asyncio.shield(manager.authenticated_future), self.timeout
            )
        except TimeoutError:
            await self.close()
            raise AmiTimeout(
                f"{self.host}:{self.port} did not answer the login within {self.timeout}s"
            ) from None
        if not reply.success:
            await self.close()
            raise AmiAuthError(
                f"Asterisk at {self.host}:{self.port} refused user {self.username!r}: "
                f"{reply.message}"
            )

    def abort(self) -> None:
        """Drop the TCP connection at once, without logging off."""
        if self._manager is not None and self._manager.protocol is not None:
            self._manager.protocol.transport.abort()

    def _disconnected(self, _manager, _exc) -> None:
        if self._on_disconnect is not None:
            self._on_disconnect()

    @property
    def connected(self) -> bool:
        manager = self._manager
        return bool(manager and manager._connected and manager.authenticated)

    def on_event(self, pattern: str, callback: Callable[[dict], object]) -> None:
        """Call `callback(headers)` for each event whose name matches the glob `pattern`."""
        assert self._manager is not None, "connect first"
        self._manager.register_event(pattern, lambda _manager, message: callback(_headers(message)))

    async def close(self) -> None:
        if self._watchdog:
            self._watchdog.cancel()
            self._watchdog = None
        if self._manager is not None:
            self._manager.closing = True
            self._manager.close()
            self._manager = None

    async def action(
        self, name: str, *, timeout: float | None = None, **headers: object
    ) -> AmiResponse:
        """Send one allow-listed action and wait (`timeout`, else the client's) for its
        whole answer."""
        if name not in ALLOWED_ACTIONS:
            raise AmiRefused(f"AMI action {name!r} is not allowed")
        if name == "Command" and not ALLOWED_COMMANDS.fullmatch(str(headers.get("Command", ""))):
            raise AmiRefused("only read-only CLI commands are allowed")
        # An asynchronous Originate is answered "queued" at once, and again by an
        # OriginateResponse event once the call is answered or fails (up to its Timeout).
        # panoramisk would wait for the second; callers want the first.
        queued_only = name == "Originate" and str(headers.get("Async", "")).lower() == "true"
        if self._manager is None or self._manager.protocol is None:
            raise AmiConnectError("not connected")
        payload = {"Action": name}
        for key, value in headers.items():
            payload[key] = check_value(key, value)
        future = self._manager.send_action(payload, as_list=False if queued_only else None)
        try:
            result = await asyncio.wait_for(future, timeout or self.timeout)
        except TimeoutError:
            raise AmiTimeout(f"{name} got no answer within {timeout or self.timeout}s") from None
        messages = result if isinstance(result, list) else [result]
        first = messages[0]
        return AmiResponse(
            success=bool(first.success),
            message=str(first.get("Message", "")),
            headers=_headers(first),
            events=tuple(_headers(m) for m in messages[1:] if "Event" in m),
        )

    async def checked_action(self, name: str, **headers: object) -> AmiResponse:
        """Like `action`, raising AmiActionError when Asterisk answers with an error."""
        response = await self.action(name, **headers)
        if not response.success:
            raise AmiActionError(name, response.message or "error")
        return response

    async def ping(self) -> None:
        await self.checked_action("Ping")

    def start_watchdog(
        self, interval: float = 5.0, on_dead: Callable[[], object] | None = None
    ) -> None:
        """Ping every `interval` seconds; if a ping gets no answer, drop the transport."""

        async def watch() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.ping()
                except (AmiTimeout, AmiConnectError, AmiActionError):
                    log.warning("%r: no answer to Ping, dropping the connection", self)
                    self.abort()
                    if on_dead is not None:
                        on_dead()
                    return

        self._watchdog = asyncio.get_running_loop().create_task(watch())
