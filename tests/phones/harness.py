"""Real SIP phones for the tests: baresip user agents (calls, RFC 4733 DTMF, blind
transfer) and a sipp busy-lamp subscriber, all from Debian's packages
(scripts/ensure-phones), registered over PJSIP to a sandbox Asterisk on loopback."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
PASSWORD = "pw-phone-{}"


@dataclass(frozen=True)
class Line:
    """One phone: its number (also its PJSIP endpoint's name) and its loopback ports."""

    number: str
    name: str
    sip_port: int
    control_port: int
    rtp_ports: str

    def endpoint(self, context: str) -> str:
        """The phone's PJSIP endpoint, as a PBX administrator writes it (see README)."""
        return f"""
[{self.number}]
type = endpoint
transport = transport-udp
context = {context}
disallow = all
allow = ulaw
dtmf_mode = rfc4733
direct_media = no
allow_subscribe = yes
rtp_symmetric = yes
force_rport = yes
callerid = "{self.name}" <{self.number}>
auth = {self.number}
aors = {self.number}

[{self.number}]
type = auth
auth_type = userpass
username = {self.number}
password = {PASSWORD.format(self.number)}

[{self.number}]
type = aor
max_contacts = 1
remove_existing = yes
"""


# baresip opens TLS on its SIP port + 1: lines are 10 apart.
ALICE = Line("201", "Alice", 5170, 4441, "30000-30098")
BOB = Line("202", "Bob", 5180, 4442, "30100-30198")
CAROL = Line("203", "Carol", 5190, 4443, "30200-30298")
LAMP = Line("209", "Lamp", 5199, 0, "")  # the busy-lamp key (sipp)


class Phone:
    """A baresip process with no sound card (a sine source, a null player), driven over
    its ctrl_tcp socket; events (CALL_INCOMING, CALL_ESTABLISHED, ...) are kept in order."""

    def __init__(self, line: Line, sip_port: int, workdir: Path):
        self.line = line
        home = workdir / f"baresip-{line.number}"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config").write_text(
            "\n".join(
                [
                    "poll_method epoll",
                    f"sip_listen 127.0.0.1:{line.sip_port}",
                    "call_local_timeout 120",
                    "call_max_calls 4",
                    f"audio_player aubridge,sink-{line.number}",
                    f"audio_alert aubridge,alert-{line.number}",
                    "audio_source ausine,440",
                    "ausrc_srate 48000",  # the sine source makes 48 kHz stereo only
                    "ausrc_channels 2",
                    "audio_level no",
                    f"rtp_ports {line.rtp_ports}",
                    "net_interface 127.0.0.1",
                    "dns_server 127.0.0.1:53",
                    "module_path /usr/lib/baresip/modules",
                    "module g711.so",
                    "module aubridge.so",
                    "module ausine.so",
                    "module_tmp account.so",
                    "module_app menu.so",
                    "module_app ctrl_tcp.so",
                    f"ctrl_tcp_listen 127.0.0.1:{line.control_port}",
                    "",
                ]
            )
        )
        (home / "accounts").write_text(
            f"<sip:{line.number}@127.0.0.1:{sip_port};transport=udp>;"
            f"auth_pass={PASSWORD.format(line.number)};answermode=manual;regint=600;"
            "audio_codecs=pcmu;mwi=no;pubint=0\n"
        )
        self.log = workdir / f"baresip-{line.number}.log"
        self.process = subprocess.Popen(
            ["baresip", "-f", str(home)],
            stdin=subprocess.DEVNULL,
            stdout=open(self.log, "w"),  # noqa: SIM115 (lives with the process)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.events: list[dict] = []
        self._replies: list[dict] = []
        self._changed = threading.Condition()
        self._tokens = itertools.count(1)
        self._socket = self._connect()
        threading.Thread(target=self._read, daemon=True).start()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + 10
        while True:
            try:
                return socket.create_connection(("127.0.0.1", self.line.control_port), 1)
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(
                        f"baresip {self.line.number} did not start: {self.log}"
                    ) from None
                time.sleep(0.1)

    def _read(self) -> None:
        self._socket.settimeout(None)
        buffer = b""
        while True:
            try:
                data = self._socket.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while (colon := buffer.find(b":")) > 0:  # netstrings: <length>:<json>,
                size = int(buffer[:colon])
                if len(buffer) < colon + size + 2:
                    break
                message = json.loads(buffer[colon + 1 : colon + 1 + size])
                buffer = buffer[colon + size + 2 :]
                with self._changed:
                    (self.events if message.get("event") else self._replies).append(message)
                    self._changed.notify_all()

    def command(self, name: str, params: str | None = None, timeout: float = 5) -> dict:
        token = str(next(self._tokens))
        body = {"command": name, "token": token, **({"params": params} if params else {})}
        data = json.dumps(body).encode()
        self._socket.sendall(str(len(data)).encode() + b":" + data + b",")
        reply = self._wait(
            lambda: next((r for r in self._replies if r.get("token") == token), None), timeout
        )
        return reply

    def _wait(self, found, timeout: float):
        deadline = time.monotonic() + timeout
        with self._changed:
            while (result := found()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"phone {self.line.number}: timed out after {timeout}s")
                self._changed.wait(left)
            return result

    def mark(self) -> int:
        with self._changed:
            return len(self.events)

    def wait_for(self, kind: str, since: int = 0, timeout: float = 15) -> dict:
        """The first event of this kind after `since` (a mark)."""
        return self._wait(
            lambda: next((e for e in self.events[since:] if e.get("type") == kind), None),
            timeout,
        )

    def dial(self, number: str) -> None:
        self.command("dial", number)

    def answer(self) -> None:
        self.command("accept")

    def hang_up(self) -> None:
        for _ in range(4):  # one call each
            self.command("hangup")

    def transfer(self, number: str) -> None:
        """A blind transfer (REFER) of the call to `number`."""
        self.command("transfer", number)

    def press(self, digits: str) -> None:
        """DTMF in the call's media (RFC 4733)."""
        self.command("sndcode", digits)

    def stop(self) -> None:
        try:
            self._socket.close()
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)


# One line per NOTIFY, as blf_watch.xml logs it:
#   NOTIFY n=1.000000 subscription-state= active;expires=3599 state=confirmed <state>...
NOTIFY_RE = re.compile(
    r"NOTIFY n=[\d.]+ subscription-state=\s*(?P<sub>[a-z]*)\S*\s+state=(?P<state>[a-z-]*)"
)


class Lamp:
    """A busy-lamp key subscribed (dialog-info) to one extension, as a phone's BLF key
    is: sipp, logging every NOTIFY's subscription state and dialog state."""

    def __init__(self, extension: str, sip_port: int, workdir: Path):
        self.log = workdir / f"lamp-{extension}.log"
        self.log.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                "sipp",
                f"127.0.0.1:{sip_port}",
                "-sf",
                str(HERE / "blf_watch.xml"),
                "-s",
                extension,
                "-key",
                "lamp",
                LAMP.number,
                "-au",
                LAMP.number,
                "-ap",
                PASSWORD.format(LAMP.number),
                "-i",
                "127.0.0.1",
                "-p",
                str(LAMP.sip_port),
                "-m",
                "1",
                "-l",
                "1",
                "-nostdin",
                "-trace_logs",
                "-log_file",
                str(self.log),
                "-trace_msg",
                "-message_file",
                str(self.log.with_suffix(".sip")),
                "-trace_err",
                "-error_file",
                str(self.log.with_suffix(".err")),
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=open(self.log.with_suffix(".out"), "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def notifies(self) -> list[tuple[str, str]]:
        """(subscription state, dialog state) of every NOTIFY so far; dialog state
        "terminated" is idle (no call in the space), "confirmed" a call parked there."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [(m["sub"], m["state"]) for m in NOTIFY_RE.finditer(text)]

    def wait_for(self, state: str, after: int = 0, timeout: float = 15) -> int:
        """Wait for a NOTIFY (after the first `after`) with this dialog state; its index."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, (_, found) in enumerate(self.notifies()[after:], start=after):
                if found == state:
                    return index
            time.sleep(0.1)
        raise AssertionError(f"lamp: no NOTIFY {state!r} in {timeout}s: {self.notifies()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=5)
