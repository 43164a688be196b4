"""The AMI client against the real Asterisk: typed results and distinct failures."""

import asyncio
import socket

import pytest

from lots.asterisk import actions
from lots.asterisk.ami import (
    AmiAuthError,
    AmiClient,
    AmiConnectError,
    AmiRefused,
    AmiTimeout,
)

pytestmark = pytest.mark.integration


def run(coro):
    return asyncio.run(coro)


def test_login_ping_and_typed_parkinglots(asterisk):
    async def go():
        async with asterisk.ami() as ami:
            await ami.ping()
            return await actions.parkinglots(ami)

    lots = run(go())
    assert lots and all(lot.start_space <= lot.stop_space for lot in lots)


def test_wrong_secret_is_an_auth_error(asterisk):
    client = AmiClient(asterisk.ami_host, asterisk.ami_port, asterisk.ami_user, "wrong")
    with pytest.raises(AmiAuthError, match="refused user 'parkweb'"):
        run(client.connect())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nothing_listening_is_a_connect_error():
    client = AmiClient("127.0.0.1", free_port(), "parkweb", "x", timeout=2)
    with pytest.raises(AmiConnectError, match="cannot connect"):
        run(client.connect())


def test_a_peer_that_never_answers_is_a_timeout():
    # A real Asterisk always greets; a black-hole listener stands in for a frozen one.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = AmiClient("127.0.0.1", listener.getsockname()[1], "parkweb", "x", timeout=0.5)
        with pytest.raises(AmiTimeout, match="did not answer the login"):
            run(client.connect())


@pytest.mark.parametrize(
    "action,headers,message",
    [
        ("Shutdown", {}, "not allowed"),
        ("Command", {"Command": "module unload res_parking.so"}, "read-only"),
        ("Originate", {"Channel": "Local/1@x\r\nAction: Shutdown"}, "line breaks"),
        ("Originate", {"Channel": "Local/1@x\nAction: Shutdown"}, "line breaks"),
        ("Originate", {"Channel": "x" * 2000}, "longer than"),
        ("Originate", {"Bad: Name": "x"}, "not allowed"),
    ],
)
def test_unsafe_actions_are_refused_before_sending(asterisk, action, headers, message):
    async def go():
        async with asterisk.ami() as ami:
            with pytest.raises(AmiRefused, match=message):
                await ami.action(action, **headers)
            await ami.ping()  # the connection is untouched

    run(go())


def test_secret_with_line_break_is_refused():
    with pytest.raises(AmiRefused):
        AmiClient("127.0.0.1", 5038, "parkweb", "x\r\nAction: Shutdown")
