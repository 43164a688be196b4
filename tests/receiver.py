"""A real HTTP receiver on loopback for webhook tests and the benchmark: it records every
request (headers, body, arrival time) and answers as told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() at arrival
    peer: tuple = ()  # the sender's address and port: one per connection

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """`answer(received) -> (status, headers)` decides each answer (200 by default)."""

    answer: Callable[[Received], tuple[int, dict]] = lambda _: (200, {})
    received: list[Received] = field(default_factory=list)
    port: int = 0  # 0: any free one

    def __post_init__(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps connections open, as real receivers do
            disable_nagle_algorithm = True  # as they do too: no 40 ms stall per answer

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body, at = self.rfile.read(length), time.time()
                got = Received(self.path, dict(self.headers), body, at, self.client_address)
                with receiver.lock:
                    receiver.received.append(got)
                status, headers = receiver.answer(got)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.lock = threading.Lock()

        class Server(ThreadingHTTPServer):
            # A listen backlog as real servers have (nginx: 511), not socketserver's 5:
            # with a short one, connections opened at once are dropped and retried 1 s on.
            request_queue_size = 512

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def take(self) -> list[Received]:
        """What arrived so far, forgotten here."""
        with self.lock:
            taken, self.received = self.received, []
        return taken

    def events(self) -> list[dict]:
        with self.lock:
            return [r.event for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
