"""Separate network hosts on one machine: network namespaces joined to the root namespace
by veth pairs, each with a small subnet of its own and a host name of its own, and
parkweb's processes started inside them.

The root namespace plays the machine that runs PostgreSQL, Redis and Asterisk: each host
reaches it at its gateway (the root side of its veth pair), and through its gateway the
root namespace's addresses on the other hosts' links too (10.231.0.0/16). Nothing is
forwarded between hosts: this machine's settings (ip_forward) are left as they are.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NETWORK = "10.231"  # the test network, 10.231.0.0/16; one /30 per host
# Held while free subnets are chosen and taken, so that two runs never pick the same.
LOCK = Path("/run/lock/parkweb-multihost.lock")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def ensure_iproute2() -> None:
    """`ip` from Debian's iproute2, installed when missing (as scripts/ensure-chromium does
    for chromium)."""
    if shutil.which("ip"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "iproute2"]):
        subprocess.run(command, check=True, env=env, capture_output=True, timeout=600)


@dataclass
class Host:
    """One host: a network namespace with its address, its gateway and its host name."""

    role: str  # "web" or "work"
    namespace: str
    hostname: str
    address: str  # this host's address (namespace side)
    gateway: str  # the root namespace's address on this host's link
    root_link: str  # the root side of the veth pair
    processes: list[Process] = field(default_factory=list)

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run on this host: in its network namespace, with its own host name.
        Every step execs the next, so the process id is the program's own."""
        return [
            "ip",
            "netns",
            "exec",
            self.namespace,
            "unshare",
            "--uts",
            "--",
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            self.hostname,
            *argv,
        ]

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, logs: Path):
        process = Process(name, self, self.command(argv), env, cwd, logs / f"{name}.log")
        self.processes.append(process)
        return process


class Process:
    """A process on a host, its output in a log file; stopped by its own pid only."""

    def __init__(self, name, host, command, env, cwd, log_path: Path):
        self.name = name
        self.host = host
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            self.popen = subprocess.Popen(
                command,
                cwd=cwd,
                env={**env, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self, start: int = 0) -> str:
        return self.log_path.read_text(errors="replace")[start:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.kill(self.pid, sig)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


def _free_subnets(count: int) -> list[int]:
    """Third octets of 10.231.N.0 that no address or route of this machine uses."""
    used = ip("-o", "-4", "addr").stdout + ip("-o", "-4", "route", "show", "table", "all").stdout
    free = [
        n for n in range(1, 255) if not re.search(rf"(?<![\d.]){re.escape(NETWORK)}\.{n}\.", used)
    ]
    if len(free) < count:
        raise RuntimeError(f"no free subnets left in {NETWORK}.0.0/16")
    return free[:count]


class Network:
    """Hosts joined to the root namespace; `close()` removes everything it made."""

    def __init__(self, roles: list[str], tag: str):
        self.hosts: list[Host] = []
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                subnets = _free_subnets(len(roles))
                for index, (role, n) in enumerate(zip(roles, subnets, strict=True)):
                    self._add(role, n, tag, "abcdefgh"[index])
            except BaseException:
                self.close()
                raise

    def _add(self, role: str, n: int, tag: str, letter: str) -> None:
        link = f"pw{tag}{letter}"  # veth names: at most 15 characters
        host = Host(
            role=role,
            namespace=f"pw-{role}-{tag}",
            hostname=f"pw-{role}",
            address=f"{NETWORK}.{n}.2",
            gateway=f"{NETWORK}.{n}.1",
            root_link=f"{link}0",
        )
        inside = f"{link}1"
        ip("netns", "add", host.namespace)
        self.hosts.append(host)  # from here on, close() removes it
        ip("link", "add", host.root_link, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", host.namespace)
        ip("addr", "add", f"{host.gateway}/30", "dev", host.root_link)
        ip("link", "set", host.root_link, "up")
        ip("-n", host.namespace, "link", "set", "lo", "up")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/30", "dev", inside)
        ip("-n", host.namespace, "link", "set", inside, "up")
        ip("-n", host.namespace, "route", "add", f"{NETWORK}.0.0/16", "via", host.gateway)

    def close(self) -> None:
        for host in self.hosts:
            for process in host.processes:
                with contextlib.suppress(Exception):
                    process.stop()
        for host in self.hosts:
            ip("netns", "delete", host.namespace, check=False)
            # Gone with its peer as a rule; removed here when the pair was never moved.
            if ip("link", "show", host.root_link, check=False).returncode == 0:
                ip("link", "delete", host.root_link, check=False)
        self.hosts = []


def wait_for_port(host: str, port: int, process: Process, timeout: float) -> None:
    """Until something accepts connections at host:port (seen from the root namespace)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        if not process.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} does not listen on {host}:{port}:\n{process.log()}")
        time.sleep(0.2)


def wait_for_log(process: Process, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log():
        if not process.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} did not say {text!r}:\n{process.log()}")
        time.sleep(0.2)
