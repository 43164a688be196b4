"""A small TCP forwarder: makes services that listen on loopback reachable at other
addresses, without touching their configuration.

    python -m tests.forwarder 10.231.1.1:5432=127.0.0.1:5432 ...

Each argument is LISTEN_HOST:PORT=TARGET_HOST:PORT. When the listening port is taken (a
service that listens on every address, say), another one is picked. Prints one line per
listener (`listening <name> <host>:<port> -> <target>`), then `ready`, then one line per
connection (`connect <name> from <host>:<port>`), all flushed at once so that a reader
of the output sees them as they happen. Runs until it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sys


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until its end, then pass the end on (half-close)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


async def relay(
    target: tuple[str, int], client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
) -> None:
    try:
        upstream_reader, upstream = await asyncio.wait_for(asyncio.open_connection(*target), 10)
    except (OSError, TimeoutError):
        client.transport.abort()
        return
    try:
        await asyncio.gather(pipe(client_reader, upstream), pipe(upstream_reader, client))
    finally:
        for writer in (client, upstream):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def listen(spec: str) -> asyncio.Server:
    listen_text, _, target_text = spec.partition("=")
    host, port = address(listen_text)
    target = address(target_text)
    name = listen_text

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        print(f"connect {name} from {peer[0]}:{peer[1]}", flush=True)
        await relay(target, reader, writer)

    try:
        server = await asyncio.start_server(handle, host, port, reuse_address=True)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        server = await asyncio.start_server(handle, host, 0, reuse_address=True)
    bound = server.sockets[0].getsockname()
    print(f"listening {name} {bound[0]}:{bound[1]} -> {target_text}", flush=True)
    return server


async def main(specs: list[str]) -> None:
    servers = [await listen(spec) for spec in specs]
    print("ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
