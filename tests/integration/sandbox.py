"""Drive the Asterisk sandbox (scripts/asterisk-sandbox) from tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from lots.asterisk import actions, verify
from lots.asterisk.ami import AmiClient, AmiResponse, Parkinglot

SCRIPT = Path(settings.BASE_DIR) / "scripts" / "asterisk-sandbox"


def sandbox(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, check=check, timeout=600
    )


@dataclass
class Sandbox:
    name: str
    ami_host: str
    ami_port: int
    ami_user: str
    ami_secret: str
    config_dir: Path

    @classmethod
    def from_env_output(cls, text: str) -> Sandbox:
        env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        return cls(
            name=env["PARKWEB_SANDBOX_NAME"],
            ami_host=env["PARKWEB_SANDBOX_AMI_HOST"],
            ami_port=int(env["PARKWEB_SANDBOX_AMI_PORT"]),
            ami_user=env["PARKWEB_SANDBOX_AMI_USER"],
            ami_secret=env["PARKWEB_SANDBOX_AMI_SECRET"],
            config_dir=Path(env["PARKWEB_SANDBOX_CONFIG_DIR"]),
        )

    def cli(self, command: str) -> str:
        return sandbox("cli", "--name", self.name, "--", command).stdout

    def write(self, filename: str, text: str) -> None:
        path = self.config_dir / filename
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def ami(self, **kwargs) -> AmiClient:
        return AmiClient(self.ami_host, self.ami_port, self.ami_user, self.ami_secret, **kwargs)

    def server_fields(self) -> dict:
        """AsteriskServer settings pointing at this sandbox."""
        return {
            "ami_host": self.ami_host,
            "ami_port": self.ami_port,
            "ami_username": self.ami_user,
            "secret": self.ami_secret,
            "config_dir": str(self.config_dir),
        }

    def load(self, files: dict[str, str]) -> dict[str, AmiResponse]:
        """Write parkweb's files and reload res_parking (and features) over AMI."""
        for filename, text in files.items():
            self.write(filename, text)

        async def reload() -> dict[str, AmiResponse]:
            async with self.ami() as ami:
                return {
                    "res_parking": await actions.reload_module(ami, "res_parking.so"),
                    "features": await actions.reload_module(ami, "features"),
                }

        return asyncio.run(reload())

    def running_state(self) -> tuple[list[Parkinglot], dict[str, verify.RunningLot]]:
        """(Parkinglots, parsed `parking show`) as Asterisk reports them now."""

        async def fetch():
            async with self.ami() as ami:
                return await actions.parkinglots(ami), await actions.command(ami, "parking show")

        parkinglots, show = asyncio.run(fetch())
        return parkinglots, verify.parse_parking_show(show)

    def generated_dialplan(self, contexts) -> dict:
        """{context: {(exten, priority): Priority}} live now in parkweb's timeout contexts."""
        from lots.asterisk import comeback

        async def fetch():
            async with self.ami() as ami:
                return {context: await comeback.live(ami, context) for context in contexts}

        return asyncio.run(fetch())

    def park_call(self, exten: str, code: str, timeout: float = 10.0, keep: bool = False) -> dict:
        """Originate a call (extensions_local.conf) that alice parks with the one-touch
        `code`; return the ParkedCall event. Hangs up every channel afterwards, unless
        `keep`."""
        self.cli(f"dialplan set global PARKCODE {code}")

        async def run() -> dict:
            async with self.ami(events="call") as ami:
                parked: asyncio.Future = asyncio.get_running_loop().create_future()
                mine = f"Local/{exten}@parkweb-test-"  # not some other call's event

                def on_parked(event: dict) -> None:
                    if str(event.get("ParkeeChannel", "")).startswith(mine):
                        parked.done() or parked.set_result(event)

                ami.on_event("ParkedCall", on_parked)
                reply = await ami.action(
                    "Originate",
                    Channel=f"Local/{exten}@parkweb-test",
                    Application="Wait",
                    Data="30",
                    Async="true",
                )
                assert reply.success, reply.message
                return await asyncio.wait_for(parked, timeout)

        try:
            return asyncio.run(run())
        finally:
            if not keep:
                self.hangup_all()

    def hangup_all(self) -> None:
        self.cli("channel request hangup all")
        deadline = time.monotonic() + 5
        while "0 active channels" not in self.cli("core show channels count"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)

    def stop(self) -> None:
        sandbox("stop", "--name", self.name)

    def start(self) -> None:
        sandbox("start", "--name", self.name, "--ami-port", str(self.ami_port))

    def originate(self, channel: str, seconds: int = 5) -> None:
        """A call from `channel` (say Local/701@acme-parking, to retrieve space 701)."""

        async def run() -> None:
            async with self.ami(events="call") as ami:
                reply = await ami.action(
                    "Originate",
                    Channel=channel,
                    Application="Wait",
                    Data=str(seconds),
                    Async="true",
                )
                assert reply.success, reply.message

        asyncio.run(run())

    @property
    def pid(self) -> int:
        out = sandbox("status", "--name", self.name).stdout
        return int(
            dict(line.split("=", 1) for line in out.splitlines() if "=" in line)[
                "PARKWEB_SANDBOX_PID"
            ]
        )
